"""Attribution by scope: who caused what, carried by ``contextvars``.

``with scope(bot_id="a", user_id="u"):`` makes every event recorded inside it, in this
thread or in asyncio tasks started from it, belong to bot ``a`` and user ``u``. Scopes nest
and merge (inner values win, tags merge); explicit arguments to ``record_*`` win over both.
Threads do not inherit context on their own: use :func:`propagate` or
:class:`ContextThreadPoolExecutor` to carry it into a pool.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Final, NamedTuple, ParamSpec, TypeVar

from .events import check_str, check_tags, dump_json

__all__ = [
    "Attribution",
    "ContextThreadPoolExecutor",
    "current_attribution",
    "propagate",
    "scope",
]

P = ParamSpec("P")
R = TypeVar("R")


class Attribution(NamedTuple):
    """The attribution in force: who an event belongs to."""

    bot_id: str | None = None
    user_id: str | None = None
    task_id: str | None = None
    tenant_id: str | None = None
    session_id: str | None = None
    tags: Mapping[str, str] | None = None
    tags_json: str | None = None  # tags serialised once here, not on every event


EMPTY: Final = Attribution()
_current: contextvars.ContextVar[Attribution] = contextvars.ContextVar(
    "agentledger_attribution", default=EMPTY
)


def current_attribution() -> Attribution:
    """The attribution of the current context (all None outside any scope)."""
    return _current.get()


def _merged(
    base: Attribution,
    bot_id: str | None,
    user_id: str | None,
    task_id: str | None,
    tenant_id: str | None,
    session_id: str | None,
    tags: Mapping[str, str] | None,
) -> Attribution:
    for name, value in (
        ("bot_id", bot_id), ("user_id", user_id), ("task_id", task_id),
        ("tenant_id", tenant_id), ("session_id", session_id),
    ):  # fmt: skip
        check_str(name, value)
    tags_json = base.tags_json
    if tags is not None:
        check_tags(dict(tags) if isinstance(tags, Mapping) else tags)
        tags = {**base.tags, **tags} if base.tags else dict(tags)
        tags_json = dump_json(tags, "tags") if tags else None
    return Attribution(
        bot_id if bot_id is not None else base.bot_id,
        user_id if user_id is not None else base.user_id,
        task_id if task_id is not None else base.task_id,
        tenant_id if tenant_id is not None else base.tenant_id,
        session_id if session_id is not None else base.session_id,
        tags if tags is not None else base.tags,
        tags_json,
    )


class scope:
    """Attribute everything recorded inside to a bot, user, task, tenant or session.

    Usable as ``with scope(...):``, ``async with``-free inside coroutines (contextvars follow
    the task), and as a decorator on sync or async functions. Invalid values raise
    :class:`~agentledger.InvalidEvent` at once: a scope is set up by the app's own code, so
    a mistake there should surface during development, not be silently dropped.
    """

    __slots__ = ("_kw", "_tokens")

    def __init__(
        self,
        *,
        bot_id: str | None = None,
        user_id: str | None = None,
        task_id: str | None = None,
        tenant_id: str | None = None,
        session_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self._kw = (bot_id, user_id, task_id, tenant_id, session_id, tags)
        _merged(EMPTY, *self._kw)  # validate early, where the mistake is
        self._tokens: list[contextvars.Token[Attribution]] = []

    def __enter__(self) -> Attribution:
        attribution = _merged(_current.get(), *self._kw)
        self._tokens.append(_current.set(attribution))
        return attribution

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper

    @contextmanager
    def _fresh(self) -> Iterator[Attribution]:
        # A decorated function may run concurrently in many threads/tasks; each call gets
        # its own token rather than sharing this object's stack.
        token = _current.set(_merged(_current.get(), *self._kw))
        try:
            yield _current.get()
        finally:
            _current.reset(token)


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so it runs in (a copy of) the context current *now*, e.g. in a thread.

    ``pool.submit(propagate(work), x)`` or ``threading.Thread(target=propagate(work))``
    carries the caller's scope and open span into the worker thread.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the submitter's context (scope and span)."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
