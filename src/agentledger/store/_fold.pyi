from collections.abc import Callable
from typing import Any

def group(
    rows: list[tuple[Any, ...]],
    bounds_ms: tuple[float, ...],
    seconds: bool = False,
    users_before: int | None = None,
) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any], dict[Any, Any]] | None: ...
def copy_text(
    rows: list[tuple[Any, ...]], n_keys: int, bucket_text: Callable[[int], str]
) -> bytes: ...
def events_copy_text(rows: list[tuple[Any, ...]]) -> bytes: ...
def merge_users(
    hours: dict[int, dict[tuple[Any, ...], list[Any]]],
    groups: dict[tuple[Any, ...], tuple[Any, ...]],
    mark: int,
    add_extra: Callable[[Any, Any], Any],
) -> int: ...
