"""Verdicts that stop coming: the step holds (and says why), rolls back when configured, and never
advances later on evidence from before the gap; the route tables' heartbeat for the gateways."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from cumulus.config import RouterConfig
from cumulus.kafka import topics
from cumulus.rollout_states import CANARY, PROMOTED, ROLLED_BACK, SHADOW
from cumulus.v1 import events_pb2
from services.router.core import Router
from services.router.listing import describe
from services.router.restore import restore
from services.router.watch import heartbeat, silent
from tests.unit.router.test_rollout import KEY, adapter_event, command, feed, verdict

HOLD_S, ROLLBACK_S = 60.0, 300.0
S = 10**9


def router_with(rollback_s: float | None = None) -> Router:
    config = RouterConfig(
        min_samples_per_step=50, verdict_hold_after_s=HOLD_S, verdict_rollback_after_s=rollback_s
    )
    router = Router(config)
    router.on_adapter(adapter_event())
    return router


def in_canary(rollback_s: float | None = None) -> Router:
    router = router_with(rollback_s)
    feed(router, 50)
    assert router.rollouts[KEY].state == CANARY
    return router


def test_a_silent_step_holds_says_why_and_publishes_nothing() -> None:
    router = in_canary()
    rollout = router.rollouts[KEY]
    feed(router, 20)  # evidence toward the next step, then silence
    assert rollout.evidence.n == 20
    assert silent(router, time.time_ns() + int(HOLD_S * 0.5) * S) == []
    assert not rollout.held
    assert silent(router, time.time_ns() + int(HOLD_S + 1) * S) == []
    assert rollout.state == CANARY and rollout.weight == 0.01  # the share does not grow
    assert rollout.evidence.n == 0  # what came before the gap no longer counts
    [row] = describe(router)
    assert row["held"] and "no verdict since" in row["reason"] and "verdict_hold_after_s" in row["reason"]


def test_a_held_step_never_advances_on_verdicts_from_before_the_gap() -> None:
    router = in_canary()
    rollout = router.rollouts[KEY]
    old = [verdict() for _ in range(60)]  # graded before the hold, delivered after it
    silent(router, time.time_ns() + int(HOLD_S + 1) * S)
    for v in old:
        router.on_verdict(v)
    assert router.evaluate() == [] and rollout.evidence.n == 0
    assert rollout.held  # stale verdicts do not end the hold either
    assert rollout.step == 1


def test_fresh_verdicts_end_the_hold_and_the_step_goes_on() -> None:
    router = in_canary()
    rollout = router.rollouts[KEY]
    rollout.hold("held: test", time.time_ns() - 1)
    outputs = feed(router, 50)
    assert not rollout.held
    assert rollout.step == 2 and [o.topic for o in outputs] == [topics.ROUTES, topics.ROLLOUTS]


def test_with_a_rollback_time_a_silent_rollout_returns_to_its_incumbent() -> None:
    router = in_canary(rollback_s=ROLLBACK_S)
    now = time.time_ns()
    silent(router, now + int(HOLD_S + 1) * S)
    assert router.rollouts[KEY].state == CANARY
    outputs = silent(router, now + int(ROLLBACK_S + 1) * S)
    table, event = (o.event for o in outputs)
    assert isinstance(event, events_pb2.RolloutEvent) and isinstance(table, events_pb2.RouteTable)
    assert event.to_state == ROLLED_BACK and "verdict_rollback_after_s" in event.reason
    assert event.evidence["silent_s"] >= ROLLBACK_S
    assert not table.canary and table.live.model == "live"
    assert silent(router, now + int(2 * ROLLBACK_S) * S) == []  # once


def test_paused_and_promoted_rollouts_are_not_starved() -> None:
    router = router_with(rollback_s=ROLLBACK_S)
    router.on_command(command(events_pb2.ROLLOUT_ACTION_PAUSE))
    assert silent(router, time.time_ns() + int(10 * ROLLBACK_S) * S) == []
    router.on_command(command(events_pb2.ROLLOUT_ACTION_PROMOTE))
    assert router.rollouts[KEY].state == PROMOTED
    assert silent(router, time.time_ns() + int(10 * ROLLBACK_S) * S) == []


def test_a_restored_rollout_gets_a_full_window_after_the_restart() -> None:
    router = in_canary(rollback_s=ROLLBACK_S)
    published = [o.event for o in heartbeat(router)]
    events = [
        events_pb2.RolloutEvent(
            meta=router.tables[KEY].meta,
            adapter_id="ad-1",
            from_state=SHADOW,
            to_state=CANARY,
            step=1,
            weight=0.01,
        )
    ]
    events[0].meta.occurred_at.FromNanoseconds(time.time_ns() - int(2 * ROLLBACK_S) * S)  # long ago
    restarted = Router(router.config)
    restore(restarted, published, events)  # type: ignore[arg-type]
    assert silent(restarted) == []  # the router was down, not the judge
    assert restarted.rollouts[KEY].state == CANARY and not restarted.rollouts[KEY].held


def test_heartbeat_republishes_the_tables_of_rollouts_in_progress_and_promoted() -> None:
    router = router_with()
    [beat] = heartbeat(router)
    table = beat.event
    assert isinstance(table, events_pb2.RouteTable) and beat.topic is topics.ROUTES
    assert table.version == router.tables[KEY].version == 1  # same version: no change of route
    assert table.meta.event_id != router.tables[KEY].meta.event_id
    router.on_command(command(events_pb2.ROLLOUT_ACTION_PROMOTE))
    assert [o.event.rollout_state for o in heartbeat(router)] == [PROMOTED]  # type: ignore[attr-defined]
    router.on_command(command(events_pb2.ROLLOUT_ACTION_ROLLBACK))
    assert heartbeat(router) == []  # a rolled-back table routes to its incumbent: nothing to vouch for


def test_a_rollback_time_shorter_than_the_hold_is_refused() -> None:
    with pytest.raises(ValidationError, match="verdict_rollback_after_s"):
        RouterConfig(verdict_hold_after_s=300, verdict_rollback_after_s=60)
