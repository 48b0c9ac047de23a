"""After promotion: the adapter answers, an audit sample also goes to the live model, and the pair is
written with the roles the judge expects (live as ``live``, the adapter as ``candidate``)."""

from __future__ import annotations

import time

from cumulus.kafka import topics
from cumulus.v1 import common_pb2, events_pb2
from services.gateway.routes import RouteBook
from tests.unit.gateway.conftest import Harness, adapter, ask
from tests.unit.gateway.fakes import Behaviour
from tests.unit.gateway.test_shadow import wait_for_pairs

ADAPTER = adapter("ad-1", task_id=7)
LIVE = common_pb2.RouteTarget(model="live")


def promote(gateway: Harness, share: float = 1.0, per_hour: int = 0, workflow: str = "tickets") -> None:
    gateway.route(
        workflow,
        live=LIVE,
        canary=[events_pb2.WeightedTarget(target=ADAPTER, weight=1.0)],
        shadow=LIVE,
        shadow_rate=share,
        audit_min_per_hour=per_hour,
        rollout_state="promoted",
    )


async def test_the_adapter_answers_and_the_audit_pair_keeps_the_roles(gateway: Harness) -> None:
    promote(gateway)
    reply = await gateway.stub.Generate(ask("route me", workflow="tickets"), metadata=gateway.auth())
    assert reply.route.mode == common_pb2.ROUTE_MODE_PROMOTED and reply.text.startswith("small says")
    [pair] = await wait_for_pairs(gateway, 1)
    assert pair.adapter_id == "ad-1"
    assert pair.candidate.text == reply.text and pair.candidate.route.mode == common_pb2.ROUTE_MODE_PROMOTED
    assert pair.live.text == "live says: <live>|user:route me"
    assert pair.live.route.target.model == "live" and pair.live.route.mode == common_pb2.ROUTE_MODE_SHADOW
    [event] = gateway.sink.of(topics.INFERENCE)  # one event per request: the audit copy is no request
    assert event.route.mode == common_pb2.ROUTE_MODE_PROMOTED


async def test_an_adapter_that_fails_on_new_traffic_is_graded_as_a_candidate_error(gateway: Harness) -> None:
    promote(gateway)
    gateway.triton.behaviours["small"] = Behaviour(fail="adapter cannot serve this")
    reply = await gateway.stub.Generate(ask("x", workflow="tickets"), metadata=gateway.auth())
    assert reply.route.mode == common_pb2.ROUTE_MODE_FALLBACK  # the user still got live's answer
    [pair] = await wait_for_pairs(gateway, 1)
    assert pair.candidate.status == common_pb2.STATUS_ERROR and "cannot serve" in pair.candidate.error_message
    assert pair.live.status == common_pb2.STATUS_OK


async def test_no_pair_when_the_live_copy_fails(gateway: Harness) -> None:
    promote(gateway)
    gateway.core.shadows.timeout_s = 0.2
    gateway.triton.behaviours["live"] = Behaviour(hang=True)
    reply = await gateway.stub.Generate(ask("x", workflow="tickets"), metadata=gateway.auth())
    assert reply.route.mode == common_pb2.ROUTE_MODE_PROMOTED
    assert await wait_for_pairs(gateway, 1, timeout_s=1.0) == []  # nothing to grade the adapter against


def test_the_floor_audits_a_quiet_workflow_whatever_the_share() -> None:
    book = RouteBook()
    meta = common_pb2.EventMeta(tenant="acme", workflow="quiet")
    book.apply(
        events_pb2.RouteTable(
            meta=meta,
            version=1,
            live=LIVE,
            canary=[events_pb2.WeightedTarget(target=ADAPTER, weight=1.0)],
            shadow=LIVE,
            shadow_rate=0.0,
            audit_min_per_hour=3600,  # one a second
            rollout_state="promoted",
        )
    )
    audited = [book.plan("acme", "quiet", f"k-{i}").shadow is not None for i in range(50)]
    assert audited[0] and sum(audited) == 1  # the first is due; the next is a second away
    time.sleep(1.05)
    assert book.plan("acme", "quiet", "k-late").shadow == LIVE
