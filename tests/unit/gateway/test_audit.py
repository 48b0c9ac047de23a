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
        anchor=LIVE,
        anchor_rate=share,
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
            anchor=LIVE,
            anchor_rate=0.0,
            audit_min_per_hour=3600,  # one a second
            rollout_state="promoted",
        )
    )
    audited = [book.plan("acme", "quiet", f"k-{i}").anchor is not None for i in range(50)]
    assert audited[0] and sum(audited) == 1  # the first is due; the next is a second away
    time.sleep(1.05)
    assert book.plan("acme", "quiet", "k-late").anchor == LIVE


def test_a_table_from_a_router_before_anchors_is_still_audited() -> None:
    book = RouteBook()
    book.apply(
        events_pb2.RouteTable(
            meta=common_pb2.EventMeta(tenant="acme", workflow="old"),
            version=1,
            live=LIVE,
            canary=[events_pb2.WeightedTarget(target=ADAPTER, weight=1.0)],
            shadow=LIVE,  # the audit as it was written: a shadow copy to the live model
            shadow_rate=1.0,
            rollout_state="promoted",
        )
    )
    plan = book.plan("acme", "old", "k")
    assert plan.anchor == LIVE and plan.shadow is None


async def test_v2_over_v1_is_graded_against_v1_and_live_and_v1_against_live(gateway: Harness) -> None:
    v1, v2 = adapter("ad-v1", task_id=7), adapter("ad-v2", task_id=8)
    gateway.route("tickets", live=v1, shadow=v2, shadow_rate=1.0, anchor=LIVE, anchor_rate=1.0)
    reply = await gateway.stub.Generate(ask("route me", workflow="tickets"), metadata=gateway.auth())
    assert reply.route.target.adapter_id == "ad-v1"  # v1 still answers the user
    pairs = await wait_for_pairs(gateway, 3)
    graded = {(p.live.route.target.adapter_id or p.live.route.target.model, p.adapter_id) for p in pairs}
    assert graded == {("ad-v1", "ad-v2"), ("live", "ad-v2"), ("live", "ad-v1")}
    v1_vs_live = next(p for p in pairs if p.adapter_id == "ad-v1")
    assert v1_vs_live.candidate.text == reply.text  # the answer the user got, against live's
    assert {p.request_id for p in pairs} == {pairs[0].request_id} and len({p.pair_id for p in pairs}) == 3


async def test_without_the_anchor_v2_is_graded_against_v1_only(gateway: Harness) -> None:
    gateway.route("tickets", live=adapter("ad-v1", task_id=7), shadow=ADAPTER, shadow_rate=1.0)
    await gateway.stub.Generate(ask("route me", workflow="tickets"), metadata=gateway.auth())
    [pair] = await wait_for_pairs(gateway, 1)
    assert (pair.live.route.target.adapter_id, pair.adapter_id) == ("ad-v1", "ad-1")
    assert await wait_for_pairs(gateway, 2, timeout_s=0.3) == [pair]
