"""Per-tenant request rate, token budget and concurrency: refused before any work, with a retry hint."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from cumulus.apikeys import ApiKeyStore
from cumulus.errors import ResourceExhausted
from cumulus.kafka import topics
from cumulus.v1 import gateway_pb2_grpc
from services.gateway.core import GatewayCore
from services.gateway.quotas import TenantQuotas
from services.gateway.server import GatewayServer
from tests.unit.gateway.conftest import ask, gateway_config
from tests.unit.gateway.fakes import FakeAdapters, FakePromptSpecs, FakeRenderer, FakeTriton, ListSink


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def quotas(clock: Clock, **limits: float) -> TenantQuotas:
    settings = {"requests_per_s": 0.0, "request_burst": 1.0, "tokens_per_min": 0.0, "max_in_flight": 0}
    return TenantQuotas(**{**settings, **limits}, clock=clock)  # type: ignore[arg-type]


def test_the_request_rate_is_a_bucket_per_tenant() -> None:
    clock = Clock()
    limits = quotas(clock, requests_per_s=2.0, request_burst=3.0)
    for _ in range(3):
        limits.admit("acme").release()
    with pytest.raises(ResourceExhausted, match="request rate") as refused:
        limits.admit("acme")
    assert refused.value.retry_after_s == pytest.approx(0.5)
    limits.admit("globex").release()  # another tenant has its own bucket
    clock.now += 0.5
    limits.admit("acme").release()


def test_a_token_budget_overdrawn_holds_the_tenant_until_it_refills() -> None:
    clock = Clock()
    limits = quotas(clock, tokens_per_min=600.0)  # 10 tokens a second
    limits.admit("acme").release(tokens=900)  # one request may overdraw: its size is known at the end
    with pytest.raises(ResourceExhausted, match="token budget") as refused:
        limits.admit("acme")
    assert refused.value.retry_after_s == pytest.approx(30.0, rel=1e-3)
    clock.now += 30.1
    limits.admit("acme").release()


def test_requests_in_flight_are_capped_and_freed_on_release() -> None:
    limits = quotas(Clock(), max_in_flight=2)
    first, second = limits.admit("acme"), limits.admit("acme")
    with pytest.raises(ResourceExhausted, match="2 requests in flight"):
        limits.admit("acme")
    first.release()
    first.release()  # twice is once
    limits.admit("acme")
    with pytest.raises(ResourceExhausted):
        limits.admit("acme")
    second.release()


async def test_the_gateway_answers_resource_exhausted_with_a_retry_trailer(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    store = ApiKeyStore(keys)
    acme, globex = store.issue("acme"), store.issue("globex")
    config = gateway_config(tmp_path, keys, tenant_requests_per_s=0.01, tenant_request_burst=2)
    sink = ListSink()
    core = GatewayCore.build(
        config,
        triton=FakeTriton(),
        renderer=FakeRenderer(),
        sink=sink,
        adapters=FakeAdapters(),
        prompt_specs=FakePromptSpecs(),
    )
    server = GatewayServer(core)
    port = await server.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            auth = (("authorization", f"Bearer {acme}"),)
            for _ in range(2):
                await stub.Generate(ask(), metadata=auth)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Generate(ask(), metadata=auth)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "tenant 'acme' is over its request rate" in (refused.value.details() or "")
            trailers = dict(refused.value.trailing_metadata() or ())
            assert int(trailers["retry-after-ms"]) > 1000
            await stub.Generate(ask(), metadata=(("authorization", f"Bearer {globex}"),))
    finally:
        await server.stop(0)
    assert len(sink.of(topics.INFERENCE)) == 3  # the refused request cost nothing, not even an event
