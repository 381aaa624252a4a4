"""The MCP integration, driving the real ``mcp`` SDK against a real in-process MCP server.

Model calls that ask for tools go through the real ``openai`` / ``anthropic`` SDKs to the
local fake provider (``x-fake-tools``), so parent linking is tested end to end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from mcp import Client, ClientSession, MCPError
from mcp.client._memory import InMemoryTransport  # the SDK's in-memory transport
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

import agentledger
from agentledger import ConfigError, Ledger
from agentledger.integrations import anthropic as al_anthropic
from agentledger.integrations import mcp as al_mcp
from agentledger.integrations import openai as al_openai
from agentledger.testing import memory_ledger

from ._stored import events, only_event

SERVER_NAME = "kb-server"


def make_server() -> MCPServer:
    server = MCPServer(SERVER_NAME, log_level="WARNING")

    @server.tool()
    def search(q: str) -> str:
        return f"found {q}"

    @server.tool()
    def lookup(q: str) -> str:
        return f"looked up {q}"

    @server.tool()
    def echo(payload: dict[str, Any]) -> str:
        return json.dumps(payload, sort_keys=True)

    @server.tool()
    def fail(why: str) -> str:
        raise ToolError(f"cannot do that: {why}")

    @server.tool()
    def denied() -> str:
        raise MCPError(-32001, "access denied")

    return server


@pytest.fixture
def server() -> MCPServer:
    return make_server()


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Ledger]:
    led = Ledger(sqlite_url, handle_signals=False)
    try:
        yield led
    finally:
        led.close()


@pytest.fixture
def any_db(db_url: str) -> Iterator[Ledger]:
    """The same on SQLite and on the real PostgreSQL."""
    led = Ledger(db_url, handle_signals=False)
    try:
        yield led
    finally:
        led.close()


@pytest.fixture(autouse=True)
def _uninstrument_mcp() -> Iterator[None]:
    yield
    al_mcp.uninstrument()


def text(result: Any) -> str:
    return "".join(block.text for block in result.content)


def run_session(server: MCPServer, body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Connect a real mcp.Client to ``server`` in-process and run ``body(client.session)``."""

    async def main() -> Any:
        async with Client(server) as client:
            return await body(client.session)

    return asyncio.run(main())


# --- what is recorded ---------------------------------------------------------------------------
def test_success_is_recorded(server: MCPServer, any_db: Ledger) -> None:
    al_mcp.instrument(ledger=any_db)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("search", {"q": "refund policy"})

    result = run_session(server, body)
    assert text(result) == "found refund policy"  # the caller's result, untouched
    assert result.is_error is False
    e = only_event(any_db)
    assert (e.kind, e.name, e.provider, e.status) == ("tool", "search", "mcp", "ok")
    assert (e.error_type, e.error_message, e.parent_id) == (None, None, None)
    assert e.duration_ms > 0
    assert (e.cost_usd, e.cost_source) == (Decimal(0), "reported")
    assert e.metadata["mcp_server"] == SERVER_NAME
    assert json.loads(e.metadata["arguments"]) == {"q": "refund policy"}
    assert "arguments_truncated" not in e.metadata
    assert (e.input_tokens, e.output_tokens, e.model) == (0, 0, None)


def test_is_error_result_is_recorded_as_an_error(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("fail", {"why": "no access"})

    result = run_session(server, body)
    assert result.is_error is True  # returned, not raised: the SDK's behaviour is kept
    e = only_event(db)
    assert (e.name, e.status, e.error_type) == ("fail", "error", "ToolError")
    assert e.error_message is not None
    assert "cannot do that: no access" in e.error_message
    assert e.error_message == text(result)


def test_a_long_error_text_is_clipped(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("fail", {"why": "x" * 20_000})

    assert len(text(run_session(server, body))) > 20_000
    message = only_event(db).error_message
    assert message is not None
    assert len(message) <= 8192  # the ledger's limit for error messages
    assert message.endswith("…[truncated]")


def test_unknown_tool_is_an_error_result(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("no_such_tool", {})

    assert run_session(server, body).is_error is True
    e = only_event(db)
    assert (e.name, e.status, e.error_type) == ("no_such_tool", "error", "ToolError")
    assert e.metadata["arguments"] == "{}"


def test_exception_is_recorded_and_reraised(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> Any:
        with pytest.raises(MCPError) as info:
            await session.call_tool("denied")
        return info.value

    exc = run_session(server, body)
    assert exc.code == -32001
    e = only_event(db)
    assert (e.name, e.status, e.error_type, e.error_message) == (
        "denied", "error", "MCPError", "access denied",
    )  # fmt: skip
    assert e.metadata["mcp_error_code"] == -32001
    assert "arguments" not in e.metadata  # none were given


def test_the_same_exception_object_is_reraised(server: MCPServer, db: Ledger) -> None:
    boom = RuntimeError("the result does not match the output schema")

    class StrictSession(ClientSession):
        async def validate_tool_result(self, name: str, result: Any) -> None:
            raise boom

    async def main() -> None:
        async with InMemoryTransport(server) as (read, write), StrictSession(read, write) as s:
            await s.initialize()
            al_mcp.instrument(ledger=db)  # the subclass inherits the patched call_tool
            with pytest.raises(RuntimeError) as info:
                await s.call_tool("search", {"q": "x"})
            assert info.value is boom
            al_mcp.uninstrument()
            al_mcp.wrap(s, ledger=db)
            with pytest.raises(RuntimeError) as info:
                await s.call_tool("search", {"q": "y"})
            assert info.value is boom

    asyncio.run(main())
    evs = events(db)
    assert [(e.error_type, e.error_message) for e in evs] == [("RuntimeError", str(boom))] * 2
    assert [e.metadata["mcp_server"] for e in evs] == [SERVER_NAME] * 2


# --- arguments: redaction and size cap ----------------------------------------------------------
SECRET_ARGS: dict[str, Any] = {
    "query": "balance",
    "password": "hunter2",
    "API_KEY": "sk-123",
    "max_tokens": 50,
    "options": {"Authorization": "Bearer abc", "x-api-key": "k", "depth": 2},
    "accounts": [{"access_token": "t1", "id": 1}, {"client_secret": "s2", "id": 2}],
}


def test_secrets_are_redacted_by_default(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("echo", {"payload": SECRET_ARGS})

    result = run_session(server, body)
    assert json.loads(text(result)) == SECRET_ARGS  # the server got the real arguments
    recorded = json.loads(only_event(db).metadata["arguments"])
    assert recorded == {
        "payload": {
            "query": "balance",
            "password": "[redacted]",
            "API_KEY": "[redacted]",
            "max_tokens": 50,  # a count, not a token
            "options": {"Authorization": "[redacted]", "x-api-key": "[redacted]", "depth": 2},
            "accounts": [
                {"access_token": "[redacted]", "id": 1},
                {"client_secret": "[redacted]", "id": 2},
            ],
        }
    }
    assert SECRET_ARGS["password"] == "hunter2"  # the caller's dict is not changed


def test_arguments_are_capped_with_a_marker(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db, max_argument_bytes=100)
    big = {"payload": {"text": "é" * 5000, "token": "secret-value"}}

    async def body(session: ClientSession) -> Any:
        await session.call_tool("echo", big)
        await session.call_tool("search", {"q": "small"})

    run_session(server, body)
    capped, small = events(db)
    arguments = capped.metadata["arguments"]
    assert arguments.endswith(al_mcp.TRUNCATED)
    assert len(arguments.encode()) <= 100
    assert arguments.startswith('{"payload":{"text":"éé')  # cut on a character boundary
    assert capped.metadata["arguments_truncated"] is True
    full = json.dumps(
        {"payload": {"text": "é" * 5000, "token": "[redacted]"}},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    assert capped.metadata["arguments_bytes"] == len(full.encode())
    assert small.metadata["arguments"] == '{"q":"small"}'
    assert "arguments_truncated" not in small.metadata


def test_default_cap_is_4_kib(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("search", {"q": "x" * 10_000})

    run_session(server, body)
    arguments = only_event(db).metadata["arguments"]
    assert al_mcp.DEFAULT_MAX_ARGUMENT_BYTES == 4096
    assert len(arguments.encode()) == 4096
    assert arguments.endswith(al_mcp.TRUNCATED)


def test_zero_cap_records_no_arguments(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db, max_argument_bytes=0)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("search", {"q": "x"})

    run_session(server, body)
    e = only_event(db)
    assert "arguments" not in e.metadata
    assert e.metadata["mcp_server"] == SERVER_NAME


def test_custom_redact_hook(server: MCPServer, db: Ledger) -> None:
    seen: list[str] = []

    def redact(tool_name: str, arguments: Any) -> Any:
        seen.append(tool_name)
        if tool_name == "lookup":
            return None  # record no arguments for this tool
        arguments["q"] = arguments["q"].upper()  # edits a copy, not the call
        return arguments

    al_mcp.instrument(ledger=db, redact=redact)

    async def body(session: ClientSession) -> Any:
        args = {"q": "customer 42"}
        first = await session.call_tool("search", args)
        await session.call_tool("lookup", {"q": "private"})
        return first, args

    first, args = run_session(server, body)
    assert text(first) == "found customer 42"
    assert args == {"q": "customer 42"}
    assert seen == ["search", "lookup"]
    search, lookup = events(db)
    assert search.metadata["arguments"] == '{"q":"CUSTOMER 42"}'
    assert "arguments" not in lookup.metadata
    assert lookup.status == "ok"


def test_custom_hook_replaces_the_default(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db, redact=lambda name, arguments: arguments)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("search", {"q": "x", "token": "visible"})

    run_session(server, body)
    assert json.loads(only_event(db).metadata["arguments"]) == {"q": "x", "token": "visible"}


def test_broken_redact_hook_drops_the_arguments_not_the_event(
    server: MCPServer, db: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(tool_name: str, arguments: Any) -> Any:
        raise KeyError("oops")

    al_mcp.instrument(ledger=db, redact=broken)

    async def body(session: ClientSession) -> Any:
        return await session.call_tool("search", {"q": "x"})

    with caplog.at_level(logging.WARNING, logger="agentledger.integrations"):
        result = run_session(server, body)
    assert text(result) == "found x"
    e = only_event(db)
    assert (e.name, e.status) == ("search", "ok")
    assert "arguments" not in e.metadata
    assert e.metadata["arguments_dropped"] == "redact hook failed"
    assert any("redact hook failed" in r.getMessage() for r in caplog.records)


def test_redact_secrets() -> None:
    assert al_mcp.redact_secrets("t", {"Password": "p", "passwd": "p", "apiKey": "k"}) == {
        "Password": "[redacted]",
        "passwd": "[redacted]",
        "apiKey": "[redacted]",
    }
    kept = {"query": "q", "max_tokens": 5, "num_tokens": 7, "author": "a", "n": None}
    assert al_mcp.redact_secrets("t", kept) == kept
    assert al_mcp.redact_secrets("t", [{"secret": {"a": 1}}, "token"]) == [
        {"secret": "[redacted]"},
        "token",  # values are kept: only keys say what is secret
    ]
    assert al_mcp.redact_secrets("t", "plain") == "plain"


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_argument_bytes"):
        al_mcp.instrument(max_argument_bytes=-1)
    with pytest.raises(ConfigError, match="max_argument_bytes"):
        al_mcp.instrument(max_argument_bytes=al_mcp.MAX_ARGUMENT_BYTES + 1)
    with pytest.raises(ConfigError, match="max_argument_bytes"):
        al_mcp.instrument(max_argument_bytes=float("nan"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="redact"):
        al_mcp.instrument(redact="yes")  # type: ignore[arg-type]
    assert not al_mcp.is_instrumented()


# --- instrument / uninstrument / wrap -----------------------------------------------------------
def test_instrument_twice_and_uninstrument(server: MCPServer, db: Ledger) -> None:
    original = ClientSession.__dict__["call_tool"]
    al_mcp.instrument(ledger=db)
    patched = ClientSession.__dict__["call_tool"]
    assert patched is not original
    al_mcp.instrument(ledger=db, max_argument_bytes=0)  # patched once; the options switch
    assert ClientSession.__dict__["call_tool"] is patched
    assert al_mcp.is_instrumented()

    async def body(session: ClientSession) -> Any:
        await session.call_tool("search", {"q": "once"})
        al_mcp.uninstrument()
        al_mcp.uninstrument()  # twice is harmless too
        assert ClientSession.__dict__["call_tool"] is original
        return await session.call_tool("search", {"q": "not recorded"})

    assert text(run_session(server, body)) == "found not recorded"
    assert not al_mcp.is_instrumented()
    e = only_event(db)
    assert "arguments" not in e.metadata  # the second instrument()'s options were used


def test_wrap_affects_that_session_only(server: MCPServer, db: Ledger) -> None:
    async def main() -> None:
        async with Client(server) as a, Client(server) as b:
            assert al_mcp.wrap(a.session, ledger=db) is a.session
            al_mcp.wrap(a.session, ledger=db)  # twice: still one event per call
            await a.session.call_tool("search", {"q": "a"})
            await b.session.call_tool("search", {"q": "b"})
            await a.call_tool("lookup", {"q": "via the Client"})  # Client uses its session
            assert not al_mcp.is_instrumented()
            assert "call_tool" not in vars(b.session)

    asyncio.run(main())
    evs = events(db)
    assert [(e.name, e.metadata["arguments"]) for e in evs] == [
        ("search", '{"q":"a"}'),
        ("lookup", '{"q":"via the Client"}'),
    ]


def test_wrap_options_and_wrap_plus_instrument_record_once(server: MCPServer, db: Ledger) -> None:
    other = memory_ledger()

    async def main() -> None:
        async with Client(server) as client:
            al_mcp.instrument(ledger=other)
            al_mcp.wrap(client, ledger=db, max_argument_bytes=0)  # an mcp.Client works too
            await client.call_tool("search", {"q": "x"})  # Client -> instrumented session
            al_mcp.wrap(client.session, ledger=db, redact=lambda n, a: {"n": n})
            await client.session.call_tool("lookup", {"q": "y"})

    asyncio.run(main())
    wrapped, session = events(db)
    assert (wrapped.name, session.name) == ("search", "lookup")
    assert "arguments" not in wrapped.metadata
    assert session.metadata["arguments"] == '{"n":"lookup"}'
    assert wrapped.metadata["mcp_server"] == SERVER_NAME  # read from the Client too
    assert events(other) == []  # the outer wrapper recorded each call, once
    other.close()


def test_recording_failure_never_breaks_the_caller(
    server: MCPServer, db: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("ledger is broken")

    monkeypatch.setattr(db, "record", broken)
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> Any:
        ok = await session.call_tool("search", {"q": "x"})
        with pytest.raises(MCPError):
            await session.call_tool("denied")
        return ok

    assert text(run_session(server, body)) == "found x"


# --- attribution and concurrency ----------------------------------------------------------------
def test_concurrent_tasks_keep_their_own_attribution(server: MCPServer, db: Ledger) -> None:
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> None:
        async def one(i: int) -> None:
            with agentledger.scope(bot_id=f"bot-{i}", user_id=f"u-{i}"):
                await asyncio.sleep(0)
                await session.call_tool("search", {"q": str(i)})

        with agentledger.scope(tenant_id="acme"):
            await asyncio.gather(*(one(i) for i in range(20)))

    run_session(server, body)
    evs = events(db)
    assert len(evs) == 20
    for e in evs:
        i = json.loads(e.metadata["arguments"])["q"]
        assert (e.bot_id, e.user_id, e.tenant_id) == (f"bot-{i}", f"u-{i}", "acme")


# --- parent linking -----------------------------------------------------------------------------
MESSAGES: list[Any] = [{"role": "user", "content": "look it up"}]
ANTHROPIC_MODEL = "claude-sonnet-4-6"


def oai(fake: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.openai_url, api_key="test", max_retries=0)


def claude(fake: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.anthropic_url, api_key="test", max_retries=0)


def tools_header(tools: list[str]) -> dict[str, str]:
    return {"x-fake-tools": json.dumps(tools)}


async def chat(fake: Any, tools: list[str]) -> None:
    async with oai(fake) as client:
        resp = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers=tools_header(tools)
        )
        calls = resp.choices[0].message.tool_calls or []
        assert [c.function.name for c in calls if c.type == "function"] == tools


async def chat_stream(fake: Any, tools: list[str]) -> None:
    async with oai(fake) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=tools_header(tools)
        )
        async for _chunk in stream:
            pass


async def chat_sync_stream(fake: Any, tools: list[str]) -> None:
    with openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0) as client:
        for _chunk in client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=tools_header(tools)
        ):
            pass


async def responses(fake: Any, tools: list[str]) -> None:
    async with oai(fake) as client:
        resp = await client.responses.create(
            model="gpt-4o", input="look it up", extra_headers=tools_header(tools)
        )
        assert [item.name for item in resp.output if item.type == "function_call"] == tools


async def responses_stream(fake: Any, tools: list[str]) -> None:
    async with oai(fake) as client:
        stream = await client.responses.create(
            model="gpt-4o", input="look it up", stream=True, extra_headers=tools_header(tools)
        )
        async for _event in stream:
            pass


async def messages(fake: Any, tools: list[str]) -> None:
    async with claude(fake) as client:
        msg = await client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES,
            extra_headers=tools_header(tools),
        )  # fmt: skip
        assert [b.name for b in msg.content if b.type == "tool_use"] == tools


async def messages_stream(fake: Any, tools: list[str]) -> None:
    async with claude(fake) as client:
        stream = await client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES, stream=True,
            extra_headers=tools_header(tools),
        )  # fmt: skip
        async for _event in stream:
            pass


async def messages_helper(fake: Any, tools: list[str]) -> None:
    async with (
        claude(fake) as client,
        client.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES,
            extra_headers=tools_header(tools),
        ) as helper,
    ):  # fmt: skip
        msg = await helper.get_final_message()
        assert [b.name for b in msg.content if b.type == "tool_use"] == tools


ASK: dict[str, Callable[[Any, list[str]], Awaitable[None]]] = {
    "chat": chat,
    "chat_stream": chat_stream,
    "chat_sync_stream": chat_sync_stream,
    "responses": responses,
    "responses_stream": responses_stream,
    "anthropic_messages": messages,
    "anthropic_stream": messages_stream,
    "anthropic_stream_helper": messages_helper,
}


@pytest.fixture(params=sorted(ASK))
def ask(request: pytest.FixtureRequest) -> Callable[[Any, list[str]], Awaitable[None]]:
    return ASK[request.param]


def test_tool_calls_nest_under_the_model_call_that_asked_for_them(
    server: MCPServer, db: Ledger, fake: Any, ask: Callable[[Any, list[str]], Awaitable[None]]
) -> None:
    al_openai.instrument(ledger=db)
    al_anthropic.instrument(ledger=db)
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> None:
        await ask(fake, ["search", "search"])  # the model asks for search, twice
        await asyncio.gather(  # run in parallel: tasks inherit the context
            session.call_tool("search", {"q": "a"}),
            session.call_tool("search", {"q": "b"}),
        )
        await session.call_tool("lookup", {"q": "c"})  # not asked for
        await ask(fake, [])  # the next model call asks for nothing
        await session.call_tool("search", {"q": "d"})

    run_session(server, body)
    evs = events(db)
    llm = [e for e in evs if e.kind == "llm"]
    tools = {json.loads(e.metadata["arguments"])["q"]: e for e in evs if e.kind == "tool"}
    assert len(llm) == 2
    assert sorted(tools) == ["a", "b", "c", "d"]
    asked = llm[0]
    assert asked.parent_id is None
    for q in "ab":
        assert (tools[q].parent_id, tools[q].trace_id) == (asked.span_id, asked.trace_id)
    for q in "cd":
        assert tools[q].parent_id is None
        assert tools[q].trace_id not in (asked.trace_id, llm[1].trace_id)


def test_linking_is_stored_on_every_store(server: MCPServer, any_db: Ledger, fake: Any) -> None:
    al_openai.instrument(ledger=any_db)
    al_mcp.instrument(ledger=any_db)

    async def body(session: ClientSession) -> None:
        await chat(fake, ["lookup"])
        await session.call_tool("lookup", {"q": "x"})

    run_session(server, body)
    llm, tool = events(any_db)
    assert (llm.kind, tool.kind) == ("llm", "tool")
    assert (tool.parent_id, tool.trace_id) == (llm.span_id, llm.trace_id)


def test_a_tool_request_stays_in_its_own_task(server: MCPServer, db: Ledger, fake: Any) -> None:
    al_openai.instrument(ledger=db)
    al_mcp.instrument(ledger=db)

    async def body(session: ClientSession) -> None:
        asked = asyncio.Event()

        async def agent() -> None:
            await chat(fake, ["search"])
            asked.set()
            await session.call_tool("search", {"q": "mine"})

        async def bystander() -> None:
            await asked.wait()
            await session.call_tool("search", {"q": "other"})

        await asyncio.gather(agent(), bystander())

    run_session(server, body)
    evs = events(db)
    (llm,) = [e for e in evs if e.kind == "llm"]
    tools = {json.loads(e.metadata["arguments"])["q"]: e for e in evs if e.kind == "tool"}
    assert tools["mine"].parent_id == llm.span_id
    assert tools["other"].parent_id is None


def test_nesting_inside_explicit_spans(server: MCPServer, db: Ledger, fake: Any) -> None:
    al_openai.instrument(ledger=db)
    al_mcp.instrument(ledger=db)
    ids: dict[str, str] = {}

    async def body(session: ClientSession) -> None:
        with db.span("custom", "turn") as turn:
            ids["turn"] = turn.span_id
            await session.call_tool("search", {"q": "in the span"})
            await chat(fake, ["search", "lookup"])  # a child of the turn
            await session.call_tool("search", {"q": "asked"})  # a child of the model call
            with db.span("tool", "step") as step:  # a span opened after the request
                ids["step"] = step.span_id
                await session.call_tool("lookup", {"q": "in the step"})

    run_session(server, body)
    evs = events(db)
    by_name = {e.name: e for e in evs if e.kind != "tool" or e.name == "step"}
    tools = {json.loads(e.metadata["arguments"])["q"]: e for e in evs if e.provider == "mcp"}
    turn, llm = by_name["turn"], by_name["gpt-4o"]
    assert turn.span_id == ids["turn"]
    assert llm.parent_id == turn.span_id
    assert tools["in the span"].parent_id == turn.span_id
    assert tools["asked"].parent_id == llm.span_id
    assert tools["in the step"].parent_id == ids["step"]  # the innermost explicit span wins
    assert {e.trace_id for e in evs} == {turn.trace_id}


def test_record_tool_and_tool_spans_nest_under_the_asking_model_call(db: Ledger, fake: Any) -> None:
    """Tools run without MCP (record_tool, ledger.span("tool", ...), traced) link the same way."""
    al_openai.instrument(ledger=db)
    with openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0) as client:
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers=tools_header(["search", "fetch"])
        )
        db.record_tool("search", duration_ms=3.0)
        with db.span("tool", "fetch"):
            pass

        @db.traced(kind="tool", name="fetch")
        def fetch() -> None:
            return None

        fetch()
        db.record_tool("unrelated")
    evs = events(db)
    (llm,) = [e for e in evs if e.kind == "llm"]
    tools = [e for e in evs if e.kind == "tool"]
    linked = {e.name: [] for e in tools}  # type: dict[str, list[Event]]
    for e in tools:
        linked[e.name].append(e)
    for e in [*linked["search"], *linked["fetch"]]:
        assert (e.parent_id, e.trace_id) == (llm.span_id, llm.trace_id)
    assert len(linked["fetch"]) == 2
    (other,) = linked["unrelated"]
    assert other.parent_id is None
