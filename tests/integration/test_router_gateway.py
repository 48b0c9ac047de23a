"""Router and a real gateway (and Triton): the weights the router publishes are the traffic clients get.

The candidate is the bare ``small`` model (lora_task_id 0), so the test is about routing, not about
an adapter's weights; the test plays the judge by publishing verdicts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from cumulus.kafka import codec, topics
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2, gateway_pb2_grpc
from services.gateway.routes import split_point
from services.router.state import read_topic
from tests.integration.gateway_process import GatewayProcess, session_gateway
from tests.integration.router_process import (  # noqa: F401 (the router fixture is used by name)
    STEP_VERDICTS,
    TENANT,
    RouterProcess,
    adapter_ready,
    publish,
    router,
    verdicts,
    wait_for,
)

pytestmark = pytest.mark.integration
CANDIDATE_MODES = (common_pb2.ROUTE_MODE_CANARY, common_pb2.ROUTE_MODE_FALLBACK)


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str, triton_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    settings = {"CUMULUS_GATEWAY__SHADOW_CONCURRENCY": "0"}  # keep the 2 cores for the answers
    with session_gateway(tmp_path_factory.mktemp("gateway"), kafka_bootstrap, triton_server, settings) as gw:
        yield gw


@pytest.fixture
async def stub(gateway: GatewayProcess) -> AsyncIterator[gateway_pb2_grpc.GatewayStub]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def ask(workflow: str, request_id: str) -> gateway_pb2.GenerateRequest:
    return gateway_pb2.GenerateRequest(
        workflow=workflow,
        request_id=request_id,
        messages=[common_pb2.ChatMessage(role="user", content="hi")],
        params=common_pb2.GenerationParams(max_tokens=1),
    )


async def test_the_gateway_serves_the_published_canary_share(
    router: RouterProcess,  # noqa: F811
    gateway: GatewayProcess,
    stub: gateway_pb2_grpc.GatewayStub,
    kafka_bootstrap: str,
) -> None:
    workflow, adapter = f"wf-{uuid.uuid4().hex[:8]}", "bare-small"
    event = adapter_ready(workflow, adapter)
    event.lora_task_id = 0  # the bare small model: no adapter tensors needed
    await publish(kafka_bootstrap, [(topics.ADAPTERS, event)])
    await asyncio.to_thread(wait_for, router, workflow, "shadow", 0)
    for step in (1, 2, 3):
        await publish(kafka_bootstrap, verdicts(workflow, adapter, STEP_VERDICTS))
        await asyncio.to_thread(wait_for, router, workflow, "canary", step)
    weight, previous_weight = 0.25, 0.05
    # The gateway applies the table within a second: wait until a request that only this step's
    # slice sends to the candidate gets it (one the previous step's table would send there too
    # would not tell the two tables apart).
    probe = next(
        f"probe-{i}" for i in range(10_000) if previous_weight <= split_point(workflow, f"probe-{i}") < weight
    )
    deadline = time.monotonic() + 10
    while (
        await stub.Generate(ask(workflow, probe), metadata=gateway.auth)
    ).route.mode not in CANDIDATE_MODES:
        assert time.monotonic() < deadline, "gateway never applied the router's table"
        await asyncio.sleep(0.2)

    request_ids = [f"{workflow}-{i}" for i in range(400)]
    served = {}
    for request_id in request_ids:
        reply = await stub.Generate(ask(workflow, request_id), metadata=gateway.auth)
        served[request_id] = reply.route
    candidate = {r for r, route in served.items() if route.mode in CANDIDATE_MODES}
    assert candidate == {r for r in request_ids if split_point(workflow, r) < weight}
    assert all(
        served[r].target.adapter_id == adapter
        for r in candidate
        if served[r].mode == common_pb2.ROUTE_MODE_CANARY
    )
    share = len(candidate) / len(request_ids)
    print(f"realised canary share {share:.3f} for weight {weight}")
    assert abs(share - weight) < 0.08


async def test_an_adapter_failing_in_its_first_canary_step_is_rolled_back_and_live_serves_again(
    router: RouterProcess,  # noqa: F811
    gateway: GatewayProcess,
    stub: gateway_pb2_grpc.GatewayStub,
    kafka_bootstrap: str,
) -> None:
    workflow, adapter = f"wf-{uuid.uuid4().hex[:8]}", "breaks-later"
    event = adapter_ready(workflow, adapter)
    event.lora_task_id = 0
    await publish(kafka_bootstrap, [(topics.ADAPTERS, event)])
    await asyncio.to_thread(wait_for, router, workflow, "shadow", 0)
    await publish(kafka_bootstrap, verdicts(workflow, adapter, STEP_VERDICTS))
    await asyncio.to_thread(wait_for, router, workflow, "canary", 1)
    await publish(kafka_bootstrap, verdicts(workflow, adapter, 30, passed=False))
    row = await asyncio.to_thread(wait_for, router, workflow, "rolled_back", 1)
    print(f"rolled back: {row['reason']} after {row['evidence'].get('n')} verdicts")
    tables = [
        codec.decode_as(events_pb2.RouteTable, r.value)
        for r in await read_topic(kafka_bootstrap, topics.ROUTES.name)
        if r.key == codec.encode_key(TENANT, workflow)
    ]
    assert max(w.weight for t in tables for w in t.canary) == 0.01  # never more than the first step
    # The gateway applies a table within a second: wait until the 1% slice is answered by live.
    probe = next(f"probe-{i}" for i in range(10_000) if split_point(workflow, f"probe-{i}") < 0.01)
    deadline = time.monotonic() + 10
    while (
        await stub.Generate(ask(workflow, probe), metadata=gateway.auth)
    ).route.mode != common_pb2.ROUTE_MODE_LIVE:
        assert time.monotonic() < deadline, "gateway never applied the rollback"
        await asyncio.sleep(0.2)
    for i in range(50):
        reply = await stub.Generate(ask(workflow, f"{workflow}-{i}"), metadata=gateway.auth)
        assert reply.route.mode == common_pb2.ROUTE_MODE_LIVE and reply.route.target.model == "live"
