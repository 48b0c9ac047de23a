"""The OpenAI door at the HTTP level, where an SDK would hide it: malformed JSON, oversized bodies,
quotas with retry-after, raw server-sent events and a client that drops its stream."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cumulus.config import GatewayConfig
from cumulus.kafka import topics
from cumulus.v1 import common_pb2
from services.gateway.openai_http import OpenAIDoor
from services.gateway.openai_stream import may_become_call
from services.gateway.quotas import TenantQuotas
from tests.unit.gateway.conftest import Harness, serving
from tests.unit.gateway.fakes import Behaviour

BODY = {"model": "live", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[tuple[Harness, str, aiohttp.ClientSession]]:
    async with serving(tmp_path) as harness:
        server = OpenAIDoor(harness.core)
        await server.start("127.0.0.1", 0)
        auth = {"authorization": f"Bearer {harness.key}"}
        async with aiohttp.ClientSession(headers=auth) as session:
            try:
                yield harness, f"http://127.0.0.1:{server.port}/v1", session
            finally:
                await server.stop(0)


async def test_malformed_json_is_refused_naming_where(
    door: tuple[Harness, str, aiohttp.ClientSession],
) -> None:
    _, url, session = door
    async with session.post(f"{url}/chat/completions", data=b'{"model": "live",\n "messages": [}') as r:
        body = await r.json()
    assert r.status == 400 and body["error"]["type"] == "invalid_request_error"
    assert (
        "invalid JSON at line 2 column" in body["error"]["message"] and r.headers["x-should-retry"] == "false"
    )


async def test_an_oversized_body_is_refused_before_it_is_read(
    door: tuple[Harness, str, aiohttp.ClientSession],
) -> None:
    harness, url, session = door
    limit = harness.core.config.gateway.max_message_bytes
    big = json.dumps({**BODY, "messages": [{"role": "user", "content": "x" * limit}]}).encode()
    async with session.post(f"{url}/chat/completions", data=io.BytesIO(big)) as r:
        body = await r.json()
    assert r.status == 413 and body["error"]["code"] == "request_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    async with session.post(f"{url}/chat/completions", data=chunked()) as r:
        assert r.status == 413
    assert harness.sink.of(topics.INFERENCE) == []


async def test_a_tenant_over_its_quota_is_told_when_to_retry(
    door: tuple[Harness, str, aiohttp.ClientSession],
) -> None:
    harness, url, session = door
    quotas = GatewayConfig(tenant_requests_per_s=0.5, tenant_request_burst=1)
    harness.core.dispatcher.quotas = TenantQuotas.from_config(quotas)
    async with session.post(f"{url}/chat/completions", json=BODY) as first:
        assert first.status == 200
    async with session.post(f"{url}/chat/completions", json=BODY) as second:
        body = await second.json()
    assert second.status == 429 and body["error"]["type"] == "rate_limit_error"
    assert int(second.headers["retry-after"]) >= 1 and second.headers["x-should-retry"] == "true"


async def test_raw_events_end_with_done(door: tuple[Harness, str, aiohttp.ClientSession]) -> None:
    _, url, session = door
    async with session.post(f"{url}/chat/completions", json={**BODY, "stream": True}) as r:
        raw = (await r.read()).decode()
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in raw.split("\n\n") if line]
    assert events[-1] == "data: [DONE]".removeprefix("data: ") == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"][0]["delta"] == {}


async def test_a_client_that_drops_its_stream_still_gets_its_request_recorded(
    door: tuple[Harness, str, aiohttp.ClientSession],
) -> None:
    harness, url, session = door
    harness.triton.behaviours["live"] = Behaviour(delay_s=0.5)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            async with session.post(f"{url}/chat/completions", json={**BODY, "stream": True}) as r:
                await r.read()
    for _ in range(100):  # the gateway finds out when it writes the first delta
        if harness.sink.of(topics.INFERENCE):
            break
        await asyncio.sleep(0.05)
    [event] = harness.sink.of(topics.INFERENCE)
    assert event.status != common_pb2.STATUS_OK and event.error_code == "CANCELLED"


def test_only_text_that_could_still_be_a_call_is_held_back() -> None:
    for text in (
        "",
        "  ",
        "<tool",
        "<tool_call>\n{",
        '{"name"',
        "[get_weather(",
        "get_weather",
        "get_weather(ci",
    ):
        assert may_become_call(text), text
    for text in ("The weather", "<b>bold", "Sure, ", "get weather"):
        assert not may_become_call(text), text


async def test_over_the_concurrency_cap_is_a_503_before_anything_is_read(tmp_path: Path) -> None:
    async with serving(tmp_path) as harness:
        server = OpenAIDoor(harness.core)
        server.max_in_flight = 0  # as if gateway.max_concurrent_rpcs requests were in flight
        await server.start("127.0.0.1", 0)
        try:
            url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
            async with aiohttp.ClientSession() as session, session.post(url, json=BODY) as r:
                body = await r.json()
            assert r.status == 503 and body["error"]["code"] == "overloaded"
            assert r.headers["x-should-retry"] == "true" and server.in_flight == 0
        finally:
            await server.stop(0)
