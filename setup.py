"""Builds the optional compiled part of agentledger; everything else is in pyproject.toml.

``agentledger.store._fold`` (Cython) groups a batch of events for the rollups in C. It is
optional: without a C compiler, or with ``AGENTLEDGER_PURE_PYTHON`` set at install time,
the package installs without it and :mod:`agentledger.store.rollups` runs its Python
definition instead (same results; the writer is slower with rollups on).
"""

import os

from setuptools import Extension, setup


def _extensions() -> list[Extension]:
    if os.environ.get("AGENTLEDGER_PURE_PYTHON"):
        return []
    from Cython.Build import cythonize

    fold = Extension("agentledger.store._fold", ["src/agentledger/store/_fold.pyx"])
    extensions: list[Extension] = cythonize([fold], build_dir="build/cython", quiet=True)
    for extension in extensions:  # cythonize makes new ones, without the flag
        extension.optional = True  # a failed compile warns and installs without it
    return extensions


setup(ext_modules=_extensions())
