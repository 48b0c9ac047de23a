"""A drift signal about a promoted adapter: by severity the router raises the audit share, pauses the
adapter at its last canary step, or rolls the workflow back; signals about anything else change nothing."""

from __future__ import annotations

import time

import pytest

from cumulus.config import RouterConfig
from cumulus.config.drift import DriftResponse
from cumulus.kafka import codec, topics
from cumulus.rollout_states import CANARY, PAUSED, PROMOTED, ROLLED_BACK
from cumulus.v1 import events_pb2
from services.router.core import Router
from services.router.drift import on_drift
from services.router.listing import describe
from services.router.restore import restore
from tests.unit.router.test_rollout import CONFIG, KEY, TENANT, WORKFLOW, adapter_event, command, feed
from tests.unit.router.test_versions import promote_all


def signal(
    severity: int, adapter_id: str = "ad-1", name: str = "new_tools", tenant: str = TENANT
) -> events_pb2.DriftSignal:
    return events_pb2.DriftSignal(
        meta=codec.new_meta(tenant=tenant, workflow=WORKFLOW, producer="collector"),
        adapter_id=adapter_id,
        signal=name,
        severity=severity,  # type: ignore[arg-type]
        detail="40% of 50 requests offer tools never trained on (book_flight)",
        evidence={"share": 0.4, "value": 0.4},
    )


def promoted(config: RouterConfig = CONFIG) -> Router:
    router = Router(config)
    promote_all(router, "ad-1")
    return router


def test_a_notice_raises_the_audit_share_and_says_why() -> None:
    router = promoted()
    before = router.tables[KEY]
    assert before.anchor_rate == pytest.approx(CONFIG.audit_share)
    table, event = (o.event for o in on_drift(router, signal(events_pb2.DRIFT_SEVERITY_NOTICE)))
    assert isinstance(table, events_pb2.RouteTable) and isinstance(event, events_pb2.RolloutEvent)
    assert table.anchor.model == "live" and table.anchor_rate == pytest.approx(0.25)
    assert [w.weight for w in table.canary] == [1.0] and table.version == before.version + 1
    assert (event.from_state, event.to_state) == (PROMOTED, PROMOTED)
    assert event.reason.startswith("drift notice: new_tools") and event.evidence["audit_share"] == 0.25
    # The same notice again is no news; the audit's evidence so far still counts.
    assert on_drift(router, signal(events_pb2.DRIFT_SEVERITY_NOTICE)) == []
    [row] = describe(router)
    assert row["audit_share"] == 0.25
    assert row["drift"] == [
        {"signal": "new_tools", "severity": "notice", "action": "raise_audit", "detail": signal(1).detail}
    ]


def test_the_raised_share_survives_a_restart() -> None:
    router = promoted()
    published = on_drift(router, signal(events_pb2.DRIFT_SEVERITY_NOTICE))
    events = [o.event for o in published if o.topic is topics.ROLLOUTS]
    restarted = Router(CONFIG)
    assert restore(restarted, [router.tables[KEY]], events) == []  # the table in force matches
    assert restarted.rollouts[KEY].raised_audit == 0.25


def test_a_warning_pauses_at_the_last_canary_step_until_an_operator_resumes() -> None:
    router = promoted()
    table, event = (o.event for o in on_drift(router, signal(events_pb2.DRIFT_SEVERITY_WARNING)))
    assert isinstance(table, events_pb2.RouteTable) and isinstance(event, events_pb2.RolloutEvent)
    assert event.to_state == PAUSED and event.weight == CONFIG.canary_steps[-1]
    assert [w.weight for w in table.canary] == [CONFIG.canary_steps[-1]]
    assert "paused at the last canary step" in event.reason
    assert feed(router, 30, adapter_id="ad-1", error=True) == []  # paused: verdicts wait
    router.on_command(command(events_pb2.ROLLOUT_ACTION_RESUME))
    rollout = router.rollouts[KEY]
    assert (rollout.state, rollout.step) == (CANARY, len(CONFIG.canary_steps))
    feed(router, 50, adapter_id="ad-1")
    assert router.rollouts[KEY].state == PROMOTED  # gated again from that step


def test_drift_that_keeps_growing_after_the_pause_rolls_back_without_an_operator() -> None:
    router = promoted()
    on_drift(router, signal(events_pb2.DRIFT_SEVERITY_WARNING))
    time.sleep(0.001)  # measured after the pause
    assert on_drift(router, signal(events_pb2.DRIFT_SEVERITY_NOTICE)) == []  # nothing left to raise
    outputs = on_drift(router, signal(events_pb2.DRIFT_SEVERITY_CRITICAL))
    event = next(o.event for o in outputs if isinstance(o.event, events_pb2.RolloutEvent))
    assert (event.from_state, event.to_state) == (PAUSED, ROLLED_BACK)
    assert event.reason.startswith("drift critical: new_tools")


def test_a_critical_signal_rolls_back_to_the_previous_version() -> None:
    router = promoted()
    promote_all(router, "ad-2")
    outputs = on_drift(router, signal(events_pb2.DRIFT_SEVERITY_CRITICAL, adapter_id="ad-2"))
    table = next(o.event for o in outputs if o.topic is topics.ROUTES)
    assert isinstance(table, events_pb2.RouteTable)
    assert [(w.target.adapter_id, w.weight) for w in table.canary] == [("ad-1", 1.0)]
    assert (router.rollouts[KEY].adapter_id, router.rollouts[KEY].state) == ("ad-1", PROMOTED)
    assert [v.state for v in router.versions.history(KEY)] == [PROMOTED, ROLLED_BACK]


def test_drift_about_a_version_that_serves_again_after_its_successor_failed_is_acted_on() -> None:
    """v2 fails its shadow step over v1; v1 serves again as the promoted rollout, so a critical
    drift signal about v1 (measured afterwards) rolls the workflow back to live."""
    router = promoted()
    router.on_adapter(adapter_event("ad-2"))
    feed(router, 50, adapter_id="ad-2", passed=False)
    assert (router.rollouts[KEY].adapter_id, router.rollouts[KEY].state) == ("ad-1", PROMOTED)
    time.sleep(0.001)
    outputs = on_drift(router, signal(events_pb2.DRIFT_SEVERITY_CRITICAL, adapter_id="ad-1"))
    table = next(o.event for o in outputs if o.topic is topics.ROUTES)
    assert isinstance(table, events_pb2.RouteTable)
    assert not table.canary and table.live.model == "live" and not table.live.adapter_id
    assert (router.rollouts[KEY].adapter_id, router.rollouts[KEY].state) == ("ad-1", ROLLED_BACK)


@pytest.mark.parametrize(
    "stray",
    [
        signal(events_pb2.DRIFT_SEVERITY_CRITICAL, adapter_id="ad-old"),  # not the promoted adapter
        signal(events_pb2.DRIFT_SEVERITY_CRITICAL, tenant="other"),  # another tenant's workflow
        signal(events_pb2.DRIFT_SEVERITY_UNSPECIFIED),
    ],
    ids=["other-adapter", "other-tenant", "no-severity"],
)
def test_signals_about_anything_else_change_nothing(stray: events_pb2.DriftSignal) -> None:
    router = promoted()
    assert on_drift(router, stray) == []
    assert router.rollouts[KEY].state == PROMOTED


def test_a_signal_measured_before_the_promotion_changes_nothing() -> None:
    old = signal(events_pb2.DRIFT_SEVERITY_CRITICAL)
    old.meta.occurred_at.FromNanoseconds(time.time_ns() - 60 * 10**9)
    router = promoted()
    assert on_drift(router, old) == []


def test_a_rollout_in_progress_is_not_touched() -> None:
    router = Router(CONFIG)
    promote_all(router, "ad-1")
    router.rollouts[KEY].state = CANARY
    assert on_drift(router, signal(events_pb2.DRIFT_SEVERITY_CRITICAL)) == []


def test_the_actions_are_configurable() -> None:
    config = RouterConfig(min_samples_per_step=50, drift=DriftResponse(critical="record"))
    router = promoted(config)
    assert on_drift(router, signal(events_pb2.DRIFT_SEVERITY_CRITICAL)) == []
    assert router.rollouts[KEY].state == PROMOTED
    assert describe(router)[0]["drift"][0]["action"] == "record"
