"""v2 rolled out over v1 is graded against v1 (the steps) and against live as well: the route table
copies a share to the live model, and a v2 that parts from live while agreeing with v1 rolls back."""

from __future__ import annotations

from cumulus.config import RouterConfig
from cumulus.rollout_states import PROMOTED, ROLLED_BACK, SHADOW
from cumulus.v1 import events_pb2
from services.router.core import Router
from tests.unit.router.test_rollout import KEY, adapter_event, feed, verdict
from tests.unit.router.test_versions import promote_all

CONFIG = RouterConfig(min_samples_per_step=50, anchor_share=0.2, guardrail_min_samples=20)


def v2_in_shadow() -> Router:
    router = Router(CONFIG)
    promote_all(router, "ad-v1")
    router.on_adapter(adapter_event("ad-v2"))
    assert router.rollouts[KEY].state == SHADOW
    return router


def test_only_a_rollout_over_an_adapter_copies_to_live_and_promoted_the_copy_is_the_audit() -> None:
    first = Router(CONFIG)
    first.on_adapter(adapter_event("ad-v1"))
    assert not first.tables[KEY].anchor.model  # v1 against live already: nothing more to ask
    router = v2_in_shadow()
    table = router.tables[KEY]
    assert (table.live.adapter_id, table.shadow.adapter_id) == ("ad-v1", "ad-v2")
    assert (table.anchor.model, table.anchor_rate) == ("live", 0.2)
    promote_all(router, "ad-v2")
    table = router.tables[KEY]
    assert [w.target.adapter_id for w in table.canary] == ["ad-v2"] and not table.shadow.model
    assert (table.anchor.model, table.anchor_rate) == ("live", CONFIG.audit_share)


def test_verdicts_against_live_are_kept_apart_from_the_steps_evidence() -> None:
    router = v2_in_shadow()
    for _ in range(10):
        router.on_verdict(verdict(adapter_id="ad-v2"))  # v2 vs live
        router.on_verdict(verdict(adapter_id="ad-v1"))  # v1 vs live
        router.on_verdict(verdict(adapter_id="ad-v2", against="ad-v1"))  # the step's own
        router.on_verdict(verdict(adapter_id="ad-v2", against="ad-other"))  # not this rollout's
    evidence = router.rollouts[KEY].evidence
    assert evidence.n == 10
    check = evidence.live_check
    assert (check.candidate_n, check.incumbent_n) == (10, 10)


def test_a_v2_that_agrees_with_v1_but_parts_from_live_rolls_back_to_v1() -> None:
    router = v2_in_shadow()
    for i in range(30):
        router.on_verdict(verdict(adapter_id="ad-v1"))  # v1 agrees with live
        router.on_verdict(verdict(adapter_id="ad-v2", passed=i % 3 == 0))  # v2 mostly does not
    outputs = feed(router, 10, adapter_id="ad-v2")  # while agreeing with v1 (too few to advance yet)
    [rolled_back, served_again] = [o.event for o in outputs if isinstance(o.event, events_pb2.RolloutEvent)]
    assert (rolled_back.adapter_id, rolled_back.to_state) == ("ad-v2", ROLLED_BACK)
    assert rolled_back.reason.startswith("against live")
    assert rolled_back.evidence["live_check_incumbent_rate"] == 1.0
    assert (served_again.adapter_id, served_again.to_state) == ("ad-v1", PROMOTED)
    assert [w.target.adapter_id for w in router.tables[KEY].canary] == ["ad-v1"]


def test_the_live_check_needs_evidence_on_both_sides_and_yields_to_gold() -> None:
    router = v2_in_shadow()
    for _ in range(30):
        router.on_verdict(verdict(adapter_id="ad-v2", passed=False))
    feed(router, 10, adapter_id="ad-v2")
    assert router.rollouts[KEY].state == SHADOW  # no v1 verdicts against live: nothing to compare
    for _ in range(30):
        router.on_verdict(verdict(adapter_id="ad-v1"))
    gold = verdict(adapter_id="ad-v2", against="ad-v1")
    gold.reference, gold.verdict_id, gold.live_passed = "gold", "g-1", False
    router.on_verdict(gold)  # v2 right where v1 was wrong: gold may part from live
    feed(router, 1, adapter_id="ad-v2")
    assert router.rollouts[KEY].state == SHADOW


def test_promoted_the_audit_is_against_live_whatever_it_was_rolled_out_over() -> None:
    router = v2_in_shadow()
    promote_all(router, "ad-v2")
    assert router.rollouts[KEY].state == PROMOTED and router.rollouts[KEY].reference_adapter == ""
    outputs = feed(router, 10, adapter_id="ad-v2", passed=False)
    moved = [o.event for o in outputs if isinstance(o.event, events_pb2.RolloutEvent)]
    assert [(m.adapter_id, m.to_state) for m in moved] == [("ad-v2", ROLLED_BACK), ("ad-v1", PROMOTED)]
