"""Attribution scopes: nesting, explicit arguments, decorators, asyncio tasks and threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentledger import (
    Attribution,
    ContextThreadPoolExecutor,
    InvalidEvent,
    current_attribution,
    propagate,
    scope,
)
from agentledger.testing import capture_events, memory_ledger


@pytest.fixture
def ledger():
    led = memory_ledger()
    yield led
    led.close()


def test_no_scope_means_empty_attribution():
    """Outside any scope every attribution field is None."""
    assert current_attribution() == Attribution()


def test_scope_attributes_events(ledger):
    """Events recorded inside a scope carry its bot, user, task, tenant, session and tags."""
    with (
        capture_events(ledger) as events,
        scope(
            bot_id="b", user_id="u", task_id="t", tenant_id="te", session_id="s", tags={"k": "v"}
        ),
    ):
        ledger.record_llm("gpt-4o", 10, 5)
        ledger.record_tool("search")
    for e in events:
        assert (e.bot_id, e.user_id, e.task_id, e.tenant_id, e.session_id) == (
            "b",
            "u",
            "t",
            "te",
            "s",
        )
        assert e.tags == {"k": "v"}


def test_nested_scopes_merge_inner_wins_and_tags_merge(ledger):
    """Inner values win, unset inner values inherit, tags merge (inner key wins)."""
    with (
        capture_events(ledger) as events,
        scope(bot_id="outer", user_id="u", tags={"a": "1", "b": "1"}),
    ):
        with scope(bot_id="inner", tags={"b": "2", "c": "2"}) as attribution:
            assert attribution.bot_id == "inner"
            ledger.record_tool("in")
        ledger.record_tool("out")
    inner, outer = events
    assert (inner.bot_id, inner.user_id, inner.tags) == (
        "inner",
        "u",
        {"a": "1", "b": "2", "c": "2"},
    )
    assert (outer.bot_id, outer.user_id, outer.tags) == ("outer", "u", {"a": "1", "b": "1"})


def test_scope_restores_previous_attribution_on_exit():
    """Leaving a scope (even by exception) restores the outer attribution."""
    with scope(bot_id="a"):
        with pytest.raises(RuntimeError), scope(bot_id="b"):
            raise RuntimeError("x")
        assert current_attribution().bot_id == "a"
    assert current_attribution() == Attribution()


def test_explicit_arguments_win_over_scope(ledger):
    """bot_id=... and tags=... given to a recorder win over the scope (tags merge)."""
    with capture_events(ledger) as events, scope(bot_id="scoped", user_id="u", tags={"a": "1"}):
        ledger.record_llm("gpt-4o", 1, 1, bot_id="explicit", tags={"a": "2", "b": "3"})
    (e,) = events
    assert (e.bot_id, e.user_id) == ("explicit", "u")
    assert e.tags == {"a": "2", "b": "3"}


def test_record_event_fills_only_missing_attribution(ledger):
    """record(Event) keeps its own bot_id and fills the rest from the scope."""
    from datetime import UTC, datetime

    from agentledger import Event

    ev = Event("e1", "t" * 32, "s" * 16, None, datetime.now(UTC), 1.0, "tool", "x", bot_id="own")
    with capture_events(ledger) as events, scope(bot_id="scoped", user_id="u"):
        ledger.record(ev)
    assert (events[0].bot_id, events[0].user_id) == ("own", "u")


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"bot_id": ""}, id="empty"),
        pytest.param({"user_id": 5}, id="int"),
        pytest.param({"tags": {"k": 1}}, id="bad-tag"),
        pytest.param({"tags": object()}, id="tags-object"),
    ],
)
def test_invalid_scope_raises_at_once(kwargs):
    """scope() with an invalid value raises InvalidEvent when created."""
    with pytest.raises(InvalidEvent):
        scope(**kwargs)


def test_scope_as_decorator_on_sync_function(ledger):
    """@scope(...) attributes every call of a sync function, and not after it."""

    @scope(bot_id="deco")
    def work() -> str | None:
        ledger.record_tool("t")
        return current_attribution().bot_id

    with capture_events(ledger) as events:
        assert work() == "deco"
        assert work() == "deco"
    assert [e.bot_id for e in events] == ["deco", "deco"]
    assert current_attribution().bot_id is None


def test_scope_decorator_merges_with_caller_scope(ledger):
    """A decorated function called inside a scope merges with it."""

    @scope(user_id="u")
    def work() -> None:
        ledger.record_tool("t")

    with capture_events(ledger) as events, scope(bot_id="b"):
        work()
    assert (events[0].bot_id, events[0].user_id) == ("b", "u")


def test_scope_as_decorator_on_async_function(ledger):
    """@scope(...) works on coroutine functions."""

    @scope(bot_id="async-deco")
    async def work() -> str | None:
        await asyncio.sleep(0)
        ledger.record_tool("t")
        return current_attribution().bot_id

    with capture_events(ledger) as events:
        assert asyncio.run(work()) == "async-deco"
    assert events[0].bot_id == "async-deco"


def test_decorated_function_concurrently_in_threads_is_isolated(ledger):
    """One decorated function run in many threads at once: each call gets its own scope."""
    barrier = threading.Barrier(8)

    @scope(tags={"via": "deco"})
    def work(i: int) -> None:
        with scope(bot_id=f"bot-{i}"):
            barrier.wait()
            ledger.record_tool("t", metadata={"i": i})

    with capture_events(ledger) as events:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(events) == 8
    for e in events:
        assert e.bot_id == f"bot-{e.metadata['i']}"
        assert e.tags == {"via": "deco"}


def test_asyncio_tasks_inherit_scope_and_do_not_leak(ledger):
    """Many concurrent tasks, each in its own scope, only ever record their own bot_id."""
    n = 50

    async def bot(i: int) -> None:
        with scope(bot_id=f"bot-{i}"):
            for step in range(5):
                await asyncio.sleep(0)  # interleave with every other task
                ledger.record_tool("step", metadata={"i": i, "step": step})
                assert current_attribution().bot_id == f"bot-{i}"

    async def main() -> None:
        with scope(user_id="parent"):
            await asyncio.gather(*(bot(i) for i in range(n)))
        assert current_attribution() == Attribution()

    with capture_events(ledger) as events:
        asyncio.run(main())
    assert len(events) == n * 5
    for e in events:
        assert e.bot_id == f"bot-{e.metadata['i']}"
        assert e.user_id == "parent"  # inherited from the parent task's scope


def test_task_created_inside_scope_inherits_it(ledger):
    """asyncio.create_task copies the scope current at creation."""

    async def child() -> str | None:
        await asyncio.sleep(0)
        return current_attribution().bot_id

    async def main() -> tuple[str | None, str | None]:
        with scope(bot_id="creator"):
            task = asyncio.create_task(child())
        # the scope was left before the task ran; the task still has the copy
        return await task, current_attribution().bot_id

    assert asyncio.run(main()) == ("creator", None)


def test_threads_with_different_scopes_never_see_each_other(ledger):
    """Two threads, running together (Barrier), each see only their own attribution."""
    barrier = threading.Barrier(2)
    seen: dict[str, list[str | None]] = {"a": [], "b": []}

    def worker(bot: str) -> None:
        with scope(bot_id=bot):
            for i in range(200):
                if i % 50 == 0:
                    barrier.wait()
                seen[bot].append(current_attribution().bot_id)
                ledger.record_tool("t", metadata={"bot": bot})

    with capture_events(ledger) as events:
        threads = [threading.Thread(target=worker, args=(b,)) for b in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert seen == {"a": ["a"] * 200, "b": ["b"] * 200}
    assert len(events) == 400
    assert all(e.bot_id == e.metadata["bot"] for e in events)


def test_new_thread_does_not_inherit_scope():
    """A plain threading.Thread starts with an empty attribution."""
    seen = []
    with scope(bot_id="main"):
        t = threading.Thread(target=lambda: seen.append(current_attribution().bot_id))
        t.start()
        t.join()
    assert seen == [None]


def test_propagate_carries_scope_into_pool_thread(ledger):
    """pool.submit(propagate(fn)) runs fn with the submitter's scope."""

    def work() -> str | None:
        ledger.record_tool("t")
        return current_attribution().bot_id

    with (
        capture_events(ledger) as events,
        ThreadPoolExecutor(2) as pool,
        scope(bot_id="propagated"),
    ):
        assert pool.submit(propagate(work)).result() == "propagated"
    assert events[0].bot_id == "propagated"


def test_propagate_captures_scope_at_wrap_time():
    """propagate() snapshots the context when it wraps, not when it runs."""
    with scope(bot_id="then"):
        fn = propagate(lambda: current_attribution().bot_id)
    with scope(bot_id="now"):
        assert fn() == "then"


def test_propagate_with_threading_thread():
    """threading.Thread(target=propagate(fn)) carries the scope."""
    seen = []
    with scope(bot_id="t"):
        th = threading.Thread(target=propagate(lambda: seen.append(current_attribution().bot_id)))
    th.start()
    th.join()
    assert seen == ["t"]


def test_context_thread_pool_executor_carries_scope(ledger):
    """ContextThreadPoolExecutor runs each task in the submitter's scope."""

    def work(i: int) -> tuple[int, str | None]:
        ledger.record_tool("t", metadata={"i": i})
        return i, current_attribution().bot_id

    with capture_events(ledger) as events, ContextThreadPoolExecutor(4) as pool:
        futures = []
        for i in range(20):
            with scope(bot_id=f"bot-{i}"):
                futures.append(pool.submit(work, i))
        results = [f.result() for f in futures]
    assert results == [(i, f"bot-{i}") for i in range(20)]
    assert all(e.bot_id == f"bot-{e.metadata['i']}" for e in events)


def test_plain_thread_pool_executor_does_not_carry_scope(ledger):
    """Documented: a plain ThreadPoolExecutor does NOT carry the scope (use propagate)."""

    def work() -> str | None:
        ledger.record_tool("t")
        return current_attribution().bot_id

    with capture_events(ledger) as events, ThreadPoolExecutor(1) as pool, scope(bot_id="lost"):
        assert pool.submit(work).result() is None
    assert events[0].bot_id is None
