"""The OpenAI door with the official ``openai`` SDK as its client (Triton and Kafka faked).

Non-streaming and streaming completions, tools both ways, JSON mode, feedback, and every error
status as the exception the SDK documents for it. The same requests reach the same core as gRPC:
routed, captured and remembered for feedback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from cumulus.kafka import topics
from cumulus.v1 import common_pb2, events_pb2
from services.gateway.openai_http import OpenAIDoor
from tests.unit.gateway.conftest import Harness, adapter, serving

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[tuple[Harness, openai.AsyncOpenAI]]:
    async with serving(tmp_path) as harness:
        server = OpenAIDoor(harness.core)
        await server.start("127.0.0.1", 0)
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{server.port}/v1", api_key=harness.key, max_retries=0
        )
        try:
            yield harness, client
        finally:
            await client.close()
            await server.stop(0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def test_a_completion_is_served_routed_and_captured(door: tuple[Harness, openai.AsyncOpenAI]) -> None:
    harness, client = door
    raw = await client.chat.completions.with_raw_response.create(
        model="live",
        messages=[{"role": "developer", "content": "Be brief."}, *user("hello there")],
        max_completion_tokens=64,
        user="ana",
        extra_headers={"x-cumulus-workflow": "greetings"},
    )
    reply = raw.parse()
    assert reply.object == "chat.completion" and reply.model == "live"
    [choice] = reply.choices
    assert choice.message.role == "assistant" and "hello there" in (choice.message.content or "")
    assert choice.finish_reason == "stop" and reply.usage is not None and reply.usage.completion_tokens > 0
    assert raw.headers["x-cumulus-route"] == "mode=live; model=live"
    assert raw.headers["x-cumulus-workflow"] == "greetings"
    [event] = harness.sink.of(topics.INFERENCE)
    assert event.meta.workflow == "greetings" and event.status == common_pb2.STATUS_OK
    assert [m.role for m in event.messages] == ["system", "user"] and event.metadata["user"] == "ana"
    assert reply.id == f"chatcmpl-{event.request_id}"


async def test_a_stream_sends_role_deltas_finish_and_usage(door: tuple[Harness, openai.AsyncOpenAI]) -> None:
    harness, client = door
    canary = [events_pb2.WeightedTarget(target=adapter(), weight=1.0)]
    harness.route("chat", live=common_pb2.RouteTarget(model="live"), canary=canary)
    stream = await client.chat.completions.create(
        model="live",
        messages=user("count to three"),
        stream=True,
        stream_options={"include_usage": True},
        metadata={"cumulus_workflow": "chat"},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("small says:") and "count to three" in text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1
    [event] = harness.sink.of(topics.INFERENCE)
    assert event.route.mode == common_pb2.ROUTE_MODE_PROMOTED and event.response_text == text
    assert event.meta.workflow == "chat" and "cumulus_workflow" not in event.metadata


async def test_tool_calls_come_back_as_tool_calls_streamed_or_not(
    door: tuple[Harness, openai.AsyncOpenAI],
) -> None:
    harness, client = door
    harness.triton.replies["live"] = CALL
    reply = await client.chat.completions.create(
        model="live", messages=user("weather in Paris?"), tools=TOOLS, tool_choice="auto"
    )
    [choice] = reply.choices
    [call] = choice.message.tool_calls or []
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}

    stream = await client.chat.completions.create(
        model="live", messages=user("weather in Paris?"), tools=TOOLS, stream=True
    )
    chunks = [chunk async for chunk in stream]
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in deltas if d.function] == ["get_weather"]
    assert not "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # The conversation goes on: the past call and its result render as the gRPC door's would.
    harness.triton.replies["live"] = "It is sunny in Paris."
    follow_up = await client.chat.completions.create(
        model="live",
        messages=[
            *user("weather in Paris?"),
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
        ],
        tools=TOOLS,
    )
    assert follow_up.choices[0].message.content == "It is sunny in Paris."
    event = harness.sink.of(topics.INFERENCE)[-1]
    assert event.messages[1].content == CALL and event.messages[2].tool_call_id == call.id


async def test_json_mode_answers_json_or_says_it_could_not(door: tuple[Harness, openai.AsyncOpenAI]) -> None:
    harness, client = door
    harness.triton.replies["live"] = '{"team": "billing"}'
    schema = {"type": "object", "properties": {"team": {"type": "string"}}, "required": ["team"]}
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "route", "schema": schema}}
    reply = await client.chat.completions.create(model="live", messages=user("route it"), response_format=fmt)
    assert json.loads(reply.choices[0].message.content or "") == {"team": "billing"}
    harness.triton.replies["live"] = "billing, I think"
    with pytest.raises(openai.InternalServerError, match="not JSON"):
        await client.chat.completions.create(
            model="live", messages=user("route it as json"), response_format={"type": "json_object"}
        )
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="live", messages=user("route it"), response_format={"type": "json_object"}
        )
    assert refused.value.param == "messages"


async def test_each_refusal_has_its_status_and_names_its_param(
    door: tuple[Harness, openai.AsyncOpenAI],
) -> None:
    harness, client = door
    cases: list[tuple[dict[str, Any], type[openai.APIStatusError], str | None]] = [
        ({"n": 2}, openai.BadRequestError, "n"),
        ({"temperature": "hot"}, openai.BadRequestError, "temperature"),
        ({"top_p": 3}, openai.BadRequestError, "top_p"),
        ({"max_tokens": 2**40}, openai.BadRequestError, "max_tokens"),
        ({"metadata": {"tier": 3}}, openai.BadRequestError, "metadata"),
        ({"tool_choice": "required", "tools": TOOLS}, openai.BadRequestError, "tool_choice"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, openai.BadRequestError, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, openai.BadRequestError,
         "messages[0].content[0].type"),
        ({"model": "gpt-9"}, openai.NotFoundError, None),
    ]  # fmt: skip
    for fields, error, param in cases:
        body: dict[str, Any] = {"model": "live", "messages": user("hi"), **fields}
        with pytest.raises(error) as raised:
            await client.chat.completions.create(**body)
        assert raised.value.param == param, fields
        assert isinstance(raised.value.body, dict) and raised.value.body["message"], fields
    stranger = client.with_options(api_key="not-a-key")
    with pytest.raises(openai.AuthenticationError):
        await stranger.chat.completions.create(model="live", messages=user("hi"))
    with pytest.raises(openai.AuthenticationError):
        await stranger.models.list()
    assert [m.id async for m in client.models.list()] == ["live", harness.core.config.triton.live_model]
    assert harness.sink.of(topics.INFERENCE) == []  # nothing refused was served or captured


async def test_feedback_over_http_reaches_the_same_path(door: tuple[Harness, openai.AsyncOpenAI]) -> None:
    harness, client = door
    reply = await client.chat.completions.create(model="live", messages=user("hello"))
    answer = await client.post(
        "/feedback", body={"request_id": reply.id, "score": 0.25, "comment": "too long"}, cast_to=dict
    )
    [feedback] = harness.sink.of(topics.FEEDBACK)
    assert answer["event_id"] == feedback.meta.event_id and feedback.score == 0.25
    with pytest.raises(openai.NotFoundError):  # another tenant's request is not yours to rate
        await client.with_options(api_key=harness.other_key).post(
            "/feedback", body={"request_id": reply.id, "score": 1}, cast_to=dict
        )
    with pytest.raises(openai.BadRequestError):
        await client.post("/feedback", body={"request_id": reply.id, "score": "great"}, cast_to=dict)
