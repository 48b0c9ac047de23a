"""Router and a real gateway (and Triton): the weights the router publishes are the traffic clients get.

The candidate is the bare ``small`` model (lora_task_id 0), so the test is about routing, not about
an adapter's weights; the test plays the judge by publishing verdicts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cumulus.kafka import codec, topics
from cumulus.operators import ensure_dev_operator_token
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2, gateway_pb2_grpc
from ops.stack.probes import http_json
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
    running_router,
    verdicts,
    wait_for,
)

pytestmark = pytest.mark.integration
ROUTE_MAX_AGE_S = 5
CANDIDATE_MODES = (common_pb2.ROUTE_MODE_CANARY, common_pb2.ROUTE_MODE_FALLBACK)


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str, triton_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    settings = {
        "CUMULUS_GATEWAY__SHADOW_CONCURRENCY": "0",  # keep the 2 cores for the answers
        # Router absence shows within seconds (test_a_silent_judge_...); serving never changes.
        "CUMULUS_GATEWAY__ROUTE_MAX_AGE_S": str(ROUTE_MAX_AGE_S),
        "CUMULUS_ROUTER__HEARTBEAT_S": "1",
    }
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


def stale_workflows(gateway: GatewayProcess) -> set[str]:
    """What the gateway's ``GET /api/v1/routes`` lists as stale."""
    token = ensure_dev_operator_token(gateway.state_dir)
    status, body = http_json(
        f"http://127.0.0.1:{gateway.health_port}/api/v1/routes", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200 and isinstance(body, dict), body
    return {row["workflow"] for row in body["stale"]}


def eventually(check: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.3)
    return result


async def test_a_silent_judge_holds_the_share_and_an_absent_router_is_seen_by_the_gateway(
    gateway: GatewayProcess, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = {
        "CUMULUS_ROUTER__VERDICT_HOLD_AFTER_S": "3",
        "CUMULUS_ROUTER__VERDICT_ROLLBACK_AFTER_S": "12",
        "CUMULUS_ROUTER__HEARTBEAT_S": "1",
    }
    workflow, adapter = f"wf-{uuid.uuid4().hex[:8]}", "judge-goes-quiet"
    event = adapter_ready(workflow, adapter)
    event.lora_task_id = 0
    with running_router(tmp_path, kafka_bootstrap, settings) as quiet:
        await publish(kafka_bootstrap, [(topics.ADAPTERS, event)])
        await asyncio.to_thread(wait_for, quiet, workflow, "shadow", 0)
        await publish(kafka_bootstrap, verdicts(workflow, adapter, STEP_VERDICTS))
        await asyncio.to_thread(wait_for, quiet, workflow, "canary", 1)
        # The judge dies here: no verdict comes any more. The step holds, says why, does not grow.
        held = await asyncio.to_thread(
            eventually, lambda: (quiet.rollouts() or {}).get((TENANT, workflow), {}).get("held"), "no hold"
        )
        row = (quiet.rollouts() or {})[(TENANT, workflow)]
        assert held and row["state"] == "canary" and row["weight"] == 0.01, row
        assert "no verdict since" in row["reason"], row
        assert workflow not in stale_workflows(gateway)  # the router is there: its heartbeat says so
        # The router dies too: within route_max_age_s the gateway reports the table stale.
        quiet.kill()
        await asyncio.to_thread(
            eventually, lambda: workflow in stale_workflows(gateway), "gateway never saw the router go", 20
        )
        tables = [
            codec.decode_as(events_pb2.RouteTable, r.value)
            for r in await read_topic(kafka_bootstrap, topics.ROUTES.name)
            if r.key == codec.encode_key(TENANT, workflow)
        ]
        assert max(w.weight for t in tables for w in t.canary) == 0.01  # the share never grew
        # Back again, the router vouches for its table, restarts the silence clock, and with the
        # judge still silent rolls back to live after router.verdict_rollback_after_s.
        quiet.start()
        await asyncio.to_thread(
            eventually, lambda: workflow not in stale_workflows(gateway), "still stale after the restart", 20
        )
        row = await asyncio.to_thread(wait_for, quiet, workflow, "rolled_back", 1, 40)
        assert "verdict_rollback_after_s" in row["reason"], row
