"""A fuzz run against the running gateway: generated requests, garbage bytes and broken keys.

Every call must be answered with a defined status (never INTERNAL, UNKNOWN or a dropped
connection), the gateway must stay SERVING throughout and never restart, and every request
answered OK must be in ClickHouse exactly once (counted per workflow by the collector).

CI sends a few hundred; the full run is 10,000:

    FUZZ_REQUESTS=10000 .venv/bin/python -m pytest -q tests/security/test_fuzz.py
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cumulus.apikeys import ApiKeyStore
from cumulus.v1 import gateway_pb2
from tests.security.conftest import SecureStack
from tests.unit.gateway.test_fuzz import requests

REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "300"))
DEFINED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def quick(request: gateway_pb2.GenerateRequest, tokens: int) -> gateway_pb2.GenerateRequest:
    """``request`` generating at most a few tokens (unless its max_tokens is one to refuse)."""
    if request.params.max_tokens <= 512:
        request.params.max_tokens = tokens
    return request


def mutated(raw: bytes, data: st.DataObject) -> bytes:
    """A serialized request with bytes flipped, cut short or spliced in."""
    if not raw:
        return data.draw(st.binary(max_size=64))
    cut = data.draw(st.integers(0, len(raw)))
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if kind == "truncate":
        return raw[:cut]
    if kind == "splice":
        return raw[:cut] + data.draw(st.binary(min_size=1, max_size=32)) + raw[cut:]
    position = min(cut, len(raw) - 1)
    return raw[:position] + bytes([raw[position] ^ data.draw(st.integers(1, 255))]) + raw[position + 1 :]


def test_fuzzed_requests_get_defined_statuses_and_are_captured_exactly_once(
    secure_stack: SecureStack,
) -> None:
    stack = secure_stack
    tenant = f"fuzz-{uuid.uuid4().hex[:8]}"
    key = ApiKeyStore(stack.config.api_keys_path).issue(tenant)
    gateway_pid = stack.pid("gateway")
    channel = stack.channel()
    generate = channel.unary_unary(
        "/cumulus.v1.Gateway/Generate",
        request_serializer=lambda raw: raw,
        response_deserializer=gateway_pb2.GenerateResponse.FromString,
    )
    answered: Counter[str] = Counter()
    ok_by_workflow: Counter[str] = Counter()
    unhealthy: list[str] = []
    done = threading.Event()

    def watch_health() -> None:
        with stack.channel() as watch:
            health = health_pb2_grpc.HealthStub(watch)
            while not done.is_set():
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                    if status != health_pb2.HealthCheckResponse.SERVING:
                        unhealthy.append(health_pb2.HealthCheckResponse.ServingStatus.Name(status))
                except grpc.RpcError as exc:
                    unhealthy.append(str(exc.code()))  # type: ignore[attr-defined]
                done.wait(0.5)

    watcher = threading.Thread(target=watch_health, daemon=True)
    watcher.start()

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        request=requests(),
        form=st.sampled_from(["request"] * 6 + ["mutated", "garbage", "no key", "wrong key"]),
        tokens=st.integers(1, 3),
        data=st.data(),
    )
    def one(request: gateway_pb2.GenerateRequest, form: str, tokens: int, data: st.DataObject) -> None:
        raw = quick(request, tokens).SerializeToString()
        metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {key}"),)
        if form == "mutated":
            raw = mutated(raw, data)
        elif form == "garbage":
            raw = data.draw(st.binary(max_size=512))
        elif form == "no key":
            metadata = ()
        elif form == "wrong key":
            metadata = (
                ("authorization", data.draw(st.sampled_from(["Bearer ck_nope", "Basic x", "Bearer "]))),
            )
        try:
            reply = generate(raw, metadata=metadata, timeout=60)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            assert code in DEFINED, (form, code, exc.details())  # type: ignore[attr-defined]
            answered[code.name] += 1
        else:
            answered["OK"] += 1
            ok_by_workflow[reply.workflow] += 1

    try:
        one()
    finally:
        done.set()
        watcher.join(timeout=10)
        channel.close()
    print(f"fuzz: {REQUESTS} examples, answers {dict(answered)}")
    assert sum(answered.values()) >= REQUESTS
    assert answered["OK"] > REQUESTS // 10, answered  # the run exercised the whole path, not just refusals
    assert unhealthy == [], unhealthy
    assert stack.pid("gateway") == gateway_pid, "the gateway restarted"
    # Every OK request's event in ClickHouse exactly once: the count per workflow matches.
    deadline = time.monotonic() + 120
    while True:
        status, body = stack.http("collector", f"/api/v1/workflows?tenant={tenant}", stack.token)
        assert status == 200, body
        stored = Counter({w["workflow"]: int(w["requests"]) for w in body["workflows"]})
        if stored == ok_by_workflow or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    time.sleep(2.0)  # a duplicate would land right after
    status, body = stack.http("collector", f"/api/v1/workflows?tenant={tenant}", stack.token)
    assert Counter({w["workflow"]: int(w["requests"]) for w in body["workflows"]}) == ok_by_workflow
