from typing import Any

def group(
    rows: list[tuple[Any, ...]], bounds_ms: tuple[float, ...]
) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any], dict[Any, Any]] | None: ...
