"""The gateway against real Kafka and a real Triton: auth, routing, shadow, capture, drop-in, outage.

The gateway runs as its own process (``python -m services.gateway``) on free ports; its live model
is tiny-llama and its small model the real SmolLM2 (see triton_fixtures). Every test uses its own
workflow names, so route tables published by one test never steer another.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cumulus.kafka import codec, topics
from cumulus.kafka.topics import TopicSpec
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2, gateway_pb2_grpc
from services.gateway.routes import split_point
from tests.integration.gateway_process import GatewayProcess, session_gateway
from tests.integration.records import decode_or_none

pytestmark = pytest.mark.integration

SMALL = common_pb2.RouteTarget(model="small")


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str, triton_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    settings = {"CUMULUS_GATEWAY__SHADOW_TIMEOUT_S": "20"}
    with session_gateway(tmp_path_factory.mktemp("gateway"), kafka_bootstrap, triton_server, settings) as gw:
        yield gw


@pytest.fixture
async def stub(gateway: GatewayProcess) -> AsyncIterator[gateway_pb2_grpc.GatewayStub]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def ask(text: str, workflow: str = "", max_tokens: int = 8, **fields: Any) -> gateway_pb2.GenerateRequest:
    return gateway_pb2.GenerateRequest(
        workflow=workflow,
        messages=[common_pb2.ChatMessage(role="user", content=text)],
        params=common_pb2.GenerationParams(max_tokens=max_tokens),
        **fields,
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def publish_route(bootstrap: str, workflow: str, version: int, **fields: Any) -> None:
    table = events_pb2.RouteTable(
        meta=codec.new_meta(tenant="dev", workflow=workflow, producer="test"), version=version, **fields
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.ROUTES.name, codec.encode_event(table), key=codec.encode_key("dev", workflow)
        )
    finally:
        await producer.stop()


async def read_events(
    bootstrap: str, spec: TopicSpec, match: Callable[[Any], bool], count: int, timeout_s: float = 60.0
) -> list[Any]:
    """Every event of ``spec`` matching ``match``, reading to the end of the topic once ``count`` are seen."""
    consumer = AIOKafkaConsumer(
        spec.name,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                events = (decode_or_none(r.topic, r.value) for r in records)
                found.extend(e for e in events if e is not None and match(e))
            if len(found) >= count and not batches:
                ends = await consumer.end_offsets(list(consumer.assignment()))
                if all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                    break
    finally:
        await consumer.stop()
    return found


async def test_dev_key_gets_text_and_the_event_reaches_kafka(
    gateway: GatewayProcess, stub: gateway_pb2_grpc.GatewayStub, kafka_bootstrap: str
) -> None:
    request_id = unique("req")
    reply = await stub.Generate(ask("Say hello", request_id=request_id), metadata=gateway.auth)
    assert reply.text and reply.route.target.model == "live" and reply.usage.completion_tokens > 0
    [event] = await read_events(kafka_bootstrap, topics.INFERENCE, lambda e: e.request_id == request_id, 1)
    assert event.meta.tenant == "dev" and event.meta.workflow == reply.workflow
    assert event.response_text == reply.text and event.status == common_pb2.STATUS_OK
    assert (
        "Say hello" in event.prompt_text and event.prompt_text != "Say hello"
    )  # rendered by the chat template


async def test_missing_key_and_empty_messages(
    gateway: GatewayProcess, stub: gateway_pb2_grpc.GatewayStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Generate(ask("hi"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Generate(gateway_pb2.GenerateRequest(), metadata=gateway.auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and (err.value.details() or "").startswith(
        "messages"
    )


async def test_stream_returns_the_same_text_as_unary(
    gateway: GatewayProcess, stub: gateway_pb2_grpc.GatewayStub
) -> None:
    request = ask("Count from one to five", max_tokens=24)
    unary = await stub.Generate(request, metadata=gateway.auth)
    chunks = [chunk async for chunk in stub.GenerateStream(request, metadata=gateway.auth)]
    assert len(chunks) > 2 and chunks[-1].finished
    assert "".join(c.delta for c in chunks) == unary.text
    assert chunks[-1].usage.completion_tokens == unary.usage.completion_tokens


REFLECTION_CLIENT = """
import json, sys, grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

address, key, body = sys.argv[1:4]
channel = grpc.insecure_channel(address)
pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
method = pool.FindServiceByName("cumulus.v1.Gateway").methods_by_name["Generate"]
request_type = message_factory.GetMessageClass(method.input_type)
reply_type = message_factory.GetMessageClass(method.output_type)
call = channel.unary_unary(
    "/cumulus.v1.Gateway/Generate",
    request_serializer=lambda m: m.SerializeToString(),
    response_deserializer=reply_type.FromString,
)
request = json_format.Parse(body, request_type())
try:
    reply = call(request, metadata=[("authorization", "Bearer " + key)] if key else [])
    print(json.dumps({"code": "OK", "reply": json_format.MessageToDict(reply)}))
except grpc.RpcError as exc:
    print(json.dumps({"code": exc.code().name, "details": exc.details()}))
"""


def reflection_call(gateway: GatewayProcess, key: str, body: dict[str, Any]) -> dict[str, Any]:
    """Generate from a separate process that knows the API only through server reflection."""
    done = subprocess.run(
        [sys.executable, "-c", REFLECTION_CLIENT, gateway.address, key, json.dumps(body)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


async def test_client_using_only_reflection(gateway: GatewayProcess, kafka_bootstrap: str) -> None:
    request_id = unique("refl")
    body = {
        "requestId": request_id,
        "messages": [{"role": "user", "content": "Hi"}],
        "params": {"maxTokens": 4},
    }
    answer = await asyncio.to_thread(reflection_call, gateway, gateway.key, body)
    assert answer["code"] == "OK" and answer["reply"]["text"]
    assert (await asyncio.to_thread(reflection_call, gateway, "", body))["code"] == "UNAUTHENTICATED"
    empty = await asyncio.to_thread(reflection_call, gateway, gateway.key, {"messages": []})
    assert empty["code"] == "INVALID_ARGUMENT" and empty["details"].startswith("messages")
    events = await read_events(kafka_bootstrap, topics.INFERENCE, lambda e: e.request_id == request_id, 1)
    assert events[0].response_text == answer["reply"]["text"]


async def test_published_route_applies_within_a_second(
    gateway: GatewayProcess, stub: gateway_pb2_grpc.GatewayStub, kafka_bootstrap: str
) -> None:
    workflow = unique("wf-live-route")
    assert (
        await stub.Generate(ask("x", workflow, max_tokens=1), metadata=gateway.auth)
    ).route.target.model == "live"
    await publish_route(
        kafka_bootstrap, workflow, 1, canary=[events_pb2.WeightedTarget(target=SMALL, weight=1.0)]
    )
    published = time.monotonic()
    while (
        await stub.Generate(ask("x", workflow, max_tokens=1), metadata=gateway.auth)
    ).route.target.model != "small":
        assert time.monotonic() - published < 1.0, "route not applied within 1 s"
    # An older version is ignored; a newer one applies.
    await publish_route(kafka_bootstrap, workflow, 0)
    await publish_route(kafka_bootstrap, workflow, 2)
    deadline = time.monotonic() + 1.0
    while (
        await stub.Generate(ask("x", workflow, max_tokens=1), metadata=gateway.auth)
    ).route.target.model != "live":
        assert time.monotonic() < deadline


async def test_canary_split_realises_its_share(
    gateway: GatewayProcess, stub: gateway_pb2_grpc.GatewayStub, kafka_bootstrap: str
) -> None:
    workflow = unique("wf-canary")
    await publish_route(
        kafka_bootstrap, workflow, 1, canary=[events_pb2.WeightedTarget(target=SMALL, weight=0.3)]
    )
    await asyncio.sleep(1.0)
    request_ids = [f"{workflow}-{i}" for i in range(60)]
    routes = {}
    for request_id in request_ids:
        reply = await stub.Generate(
            ask("x", workflow, max_tokens=1, request_id=request_id), metadata=gateway.auth
        )
        routes[request_id] = reply.route
    expected = {r for r in request_ids if split_point(workflow, r) < 0.3}  # the split is a pure function
    assert {r for r, route in routes.items() if route.mode == common_pb2.ROUTE_MODE_CANARY} == expected
    assert all(routes[r].target.model == "small" for r in expected)
    assert 0.1 < len(expected) / len(request_ids) < 0.5


async def test_shadow_pairs_appear_and_a_failing_candidate_changes_nothing(
    gateway: GatewayProcess, stub: gateway_pb2_grpc.GatewayStub, kafka_bootstrap: str
) -> None:
    workflow = unique("wf-shadow")
    baseline = await stub.Generate(ask("Name a colour", workflow, max_tokens=12), metadata=gateway.auth)
    await publish_route(kafka_bootstrap, workflow, 1, shadow=SMALL, shadow_rate=1.0)
    await asyncio.sleep(1.0)
    good = await stub.Generate(
        ask("Name a colour", workflow, max_tokens=12, request_id=unique("sh")), metadata=gateway.auth
    )
    assert good.text == baseline.text and good.route == baseline.route
    # A candidate whose adapter cannot be loaded: Triton misses its cache, the export is missing.
    broken = common_pb2.RouteTarget(model="small", adapter_id="no-such-adapter", lora_task_id=4242)
    await publish_route(kafka_bootstrap, workflow, 2, shadow=broken, shadow_rate=1.0)
    await asyncio.sleep(1.0)
    bad_id = unique("sh")
    failing = await stub.Generate(
        ask("Name a colour", workflow, max_tokens=12, request_id=bad_id), metadata=gateway.auth
    )
    assert failing.text == baseline.text and failing.route == baseline.route
    pairs = await read_events(
        kafka_bootstrap, topics.SHADOW, lambda p: p.request_id in (good.request_id, bad_id), 2
    )
    by_request = {pair.request_id: pair for pair in pairs}
    assert len(pairs) == 2
    ok_pair = by_request[good.request_id]
    assert ok_pair.live.text == good.text and ok_pair.candidate.status == common_pb2.STATUS_OK
    assert ok_pair.candidate.text and ok_pair.candidate.route.target.model == "small"
    bad_pair = by_request[bad_id]
    assert (
        bad_pair.candidate.status == common_pb2.STATUS_ERROR
        and "no-such-adapter" in bad_pair.candidate.error_message
    )
    assert bad_pair.live.text == failing.text
