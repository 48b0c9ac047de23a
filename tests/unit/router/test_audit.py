"""After promotion the adapter stays watched: its audit verdicts run the same gate, a regression rolls
the workflow back to what served before it, and a good window just starts the next one."""

from __future__ import annotations

from cumulus.config import RouterConfig
from cumulus.kafka import topics
from cumulus.rollout_states import PROMOTED, ROLLED_BACK
from cumulus.v1 import events_pb2
from services.router.core import Router
from services.router.listing import describe
from tests.unit.router.test_rollout import CONFIG, KEY, adapter_event, command, feed
from tests.unit.router.test_versions import promote_all


def promoted(config: RouterConfig = CONFIG) -> Router:
    """ad-1 promoted by an operator (the audit does not care how it got there)."""
    router = Router(config)
    router.on_adapter(adapter_event("ad-1"))
    router.on_command(command(events_pb2.ROLLOUT_ACTION_PROMOTE))
    assert router.rollouts[KEY].state == PROMOTED
    return router


def test_a_good_audit_window_publishes_nothing_and_starts_the_next() -> None:
    router = promoted()
    assert feed(router, 50, adapter_id="ad-1") == []
    rollout = router.rollouts[KEY]
    assert rollout.state == PROMOTED and rollout.audits == 1 and rollout.evidence.n == 0
    [row] = describe(router)
    assert row["audits_passed"] == 1 and row["last_audit"]["reason"].startswith("non-inferior")


def test_a_regression_in_the_audit_rolls_back_to_live() -> None:
    router = promoted()
    outputs = feed(router, 10, adapter_id="ad-1", passed=False)
    table, event = (o.event for o in outputs)
    assert isinstance(event, events_pb2.RolloutEvent) and isinstance(table, events_pb2.RouteTable)
    assert (event.from_state, event.to_state) == (PROMOTED, ROLLED_BACK)
    assert event.reason.startswith("audit after promotion: inferior")
    assert not table.canary and table.live.model == "live" and not table.anchor.model


def test_a_regression_of_v2_returns_to_v1_not_to_live_and_v1_is_watched_again() -> None:
    router = promoted()
    promote_all(router, "ad-2")
    outputs = feed(router, 20, adapter_id="ad-2", error=True)  # the guardrail: it errs on every request
    moves = [
        (o.event.adapter_id, o.event.from_state, o.event.to_state)
        for o in outputs
        if o.topic is topics.ROLLOUTS
    ]
    assert moves == [("ad-2", PROMOTED, ROLLED_BACK), ("ad-1", PROMOTED, PROMOTED)]
    table = next(o.event for o in outputs if o.topic is topics.ROUTES)
    assert isinstance(table, events_pb2.RouteTable)
    assert [(w.target.adapter_id, w.weight) for w in table.canary] == [("ad-1", 1.0)]
    assert table.anchor.model == "live"  # v1's audit resumes
    v1 = router.rollouts[KEY]
    assert (v1.adapter_id, v1.state) == ("ad-1", PROMOTED)
    assert v1.last is not None and "ad-2 rolled back (audit after promotion: " in v1.last.reason
    assert "guardrail" in v1.last.reason and v1.last.reason.endswith("v1 (ad-1) serves again")
    outputs = feed(router, 10, adapter_id="ad-1", passed=False)  # and a regression of v1 goes to live
    table = next(o.event for o in outputs if o.topic is topics.ROUTES)
    assert isinstance(table, events_pb2.RouteTable)
    assert not table.canary and table.live.model == "live" and not table.live.adapter_id
    assert router.rollouts[KEY].state == ROLLED_BACK


def test_an_inconclusive_window_starts_another_instead_of_rolling_back() -> None:
    config = RouterConfig(min_samples_per_step=50, max_samples_per_step=60, margin=0.02)
    router = promoted(config)
    # 90% agreement against a 2% margin: neither shown good enough nor shown worse within 60
    feed(router, 30, adapter_id="ad-1")
    feed(router, 3, adapter_id="ad-1", passed=False)
    assert feed(router, 27, adapter_id="ad-1") == []
    rollout = router.rollouts[KEY]
    assert rollout.state == PROMOTED and rollout.audits == 1
    assert rollout.last_audit is not None and rollout.last_audit.reason.startswith("inconclusive")


def test_verdicts_of_a_paused_promotion_do_not_count() -> None:
    router = promoted()
    router.on_command(command(events_pb2.ROLLOUT_ACTION_PAUSE))
    assert feed(router, 20, adapter_id="ad-1", error=True) == []
    assert router.rollouts[KEY].evidence.n == 0


def test_no_audit_when_turned_off() -> None:
    router = Router(RouterConfig(min_samples_per_step=50, audit_share=0, audit_min_per_hour=0))
    router.on_adapter(adapter_event())
    router.on_command(command(events_pb2.ROLLOUT_ACTION_PROMOTE))
    assert not router.tables[KEY].anchor.model
