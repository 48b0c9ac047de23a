"""The live model as an OpenAI-compatible endpoint, against a scripted upstream (aiohttp, in process):
what is sent (messages with past tool calls, tools, streaming with usage), what comes back on the
call's Outcome (text, tool calls as the canonical text, token counts), and upstream failures as
the gateway's errors. tests/integration/test_live_endpoint.py runs a real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cumulus.config import LiveEndpointConfig
from cumulus.errors import InvalidArgument, NotReady, ResourceExhausted
from cumulus.kafka import topics
from cumulus.v1 import common_pb2, gateway_pb2
from services.gateway.admit import admit_chat
from services.gateway.openai_target import OpenAIEndpoint, openai_messages
from tests.unit.gateway.conftest import Harness, serving

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


class Upstream:
    """A scripted OpenAI-compatible server: records bodies, answers with ``events`` or ``status``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self.status = 200
        self.error_headers: dict[str, str] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        if self.status != 200:
            error = {"error": {"message": "slow down", "type": "x"}}
            return web.json_response(error, status=self.status, headers=self.error_headers)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in self.events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


def chunk(delta: dict[str, Any] | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {"choices": [] if delta is None else [{"index": 0, "delta": delta}], "usage": usage}


@pytest.fixture
async def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Harness, Upstream]]:
    upstream = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    monkeypatch.setenv("CUMULUS_LIVE_API_KEY", "sk-upstream")
    async with serving(tmp_path) as harness:
        config = LiveEndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="frontier-1")
        harness.core.dispatcher.caller.live = OpenAIEndpoint(config)
        try:
            yield harness, upstream
        finally:
            await harness.core.dispatcher.caller.live.close()
            await runner.cleanup()


async def test_the_endpoint_answers_as_the_live_model(live: tuple[Harness, Upstream]) -> None:
    harness, upstream = live
    upstream.events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": " there"}),
        chunk(None, {"prompt_tokens": 12, "completion_tokens": 2}),
    ]
    request = gateway_pb2.GenerateRequest(
        messages=[common_pb2.ChatMessage(role="user", content="hi")],
        params=common_pb2.GenerationParams(max_tokens=20, temperature=0.5),
    )
    reply = await harness.stub.Generate(request, metadata=harness.auth())
    assert (
        reply.text == "Hello there" and reply.usage.prompt_tokens == 12 and reply.usage.completion_tokens == 2
    )
    [body] = upstream.bodies
    assert (
        body["model"] == "frontier-1" and body["stream"] and body["stream_options"] == {"include_usage": True}
    )
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["max_tokens"] == 20
    assert upstream.headers[0]["Authorization"] == "Bearer sk-upstream"
    assert not harness.triton.requests  # Triton never saw it
    [event] = harness.sink.of(topics.INFERENCE)
    assert event.response_text == "Hello there" and event.status == common_pb2.STATUS_OK
    assert "sk-upstream" not in str(event)


async def test_tool_calls_go_out_and_come_back_in_each_side_s_format(live: tuple[Harness, Upstream]) -> None:
    harness, upstream = live
    upstream.events = [
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    ]  # fmt: skip
    tool = common_pb2.Tool(name="get_weather", parameters_json='{"type": "object"}')
    request = gateway_pb2.GenerateRequest(
        messages=[
            common_pb2.ChatMessage(role="user", content="weather?"),
            common_pb2.ChatMessage(role="assistant", content=CALL),
            common_pb2.ChatMessage(role="tool", content='{"sky": "grey"}', tool_call_id="call_0"),
            common_pb2.ChatMessage(role="user", content="and again?"),
        ],
        tools=[tool],
    )
    reply = await harness.stub.Generate(request, metadata=harness.auth())
    assert reply.text == CALL  # the canonical text the grader, detection and training read
    sent = upstream.bodies[0]["messages"]
    assert sent[1]["content"] is None and sent[1]["tool_calls"][0]["id"] == "call_0"
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert sent[2] == {"role": "tool", "content": '{"sky": "grey"}', "tool_call_id": "call_0"}
    assert upstream.bodies[0]["tools"][0]["function"]["name"] == "get_weather"


async def test_upstream_failures_become_the_gateway_s(live: tuple[Harness, Upstream]) -> None:
    harness, upstream = live
    request = gateway_pb2.GenerateRequest(messages=[common_pb2.ChatMessage(role="user", content="hi")])
    endpoint = harness.core.dispatcher.caller.live
    assert endpoint is not None
    for status, error in ((429, ResourceExhausted), (400, InvalidArgument), (401, NotReady), (503, NotReady)):
        upstream.status, upstream.error_headers = status, {"retry-after": "7"}
        call = _call(harness, request)
        with pytest.raises(error) as raised:
            async for _ in endpoint.stream(call.prompt, timeout_s=5):
                pass
        assert "slow down" in raised.value.message
        if status == 429:
            assert raised.value.retry_after_s == 7.0  # type: ignore[attr-defined]


def test_messages_pass_as_they_are_but_a_tool_message_s_name() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi", "name": "ana"},
                {"role": "tool", "content": "{}", "name": "get_weather"}]  # fmt: skip
    assert openai_messages(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi", "name": "ana"},
        {"role": "tool", "content": "{}", "tool_call_id": ""},
    ]


def _call(harness: Harness, request: gateway_pb2.GenerateRequest) -> Any:
    return admit_chat(harness.core, "acme", request, api="generate", stream=True, timeout_s=5)
