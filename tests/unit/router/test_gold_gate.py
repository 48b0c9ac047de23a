"""The gold gate: the paired test's validity and power, and a rollout it decides end to end."""

from __future__ import annotations

import numpy as np
import pytest

from cumulus.config import RouterConfig
from cumulus.kafka import codec
from cumulus.rollout_states import PROMOTED, ROLLED_BACK, SHADOW
from cumulus.v1 import events_pb2
from services.router import gates
from services.router.core import Router
from services.router.paired import GoldCounts, PairedGoldTest
from services.router.restore import restore
from services.router.rollout import WorkflowKey
from tests.unit.router.test_rollout import KEY, TENANT, WORKFLOW, adapter_event, verdict

POLICY = gates.GatePolicy(margin=0.1, min_samples=50, min_gold_samples=30)


def counts_of(candidate: list[bool], live: list[bool]) -> GoldCounts:
    counts = GoldCounts()
    for c, l_ in zip(candidate, live, strict=True):
        counts.add(c, l_)
    return counts


def first_decision(rng: np.random.Generator, p_candidate: float, p_live: float, n: int) -> str:
    """Peek after every gold verdict, as the router does; what the test says first."""
    test, counts = PairedGoldTest(margin=0.1), GoldCounts()
    for c, l_ in zip(rng.random(n) < p_candidate, rng.random(n) < p_live, strict=True):
        counts.add(bool(c), bool(l_))
        if test.shows_noninferior(counts):
            return "advance"
        if test.shows_inferior(counts):
            return "rollback"
    return "undecided"


def test_a_candidate_exactly_at_the_margin_is_rarely_advanced_even_with_peeking() -> None:
    rng = np.random.default_rng(7)
    outcomes = [first_decision(rng, 0.5, 0.6, 300) for _ in range(120)]  # delta = -margin exactly
    assert outcomes.count("advance") / len(outcomes) <= 0.05


def test_a_candidate_that_beats_live_advances_and_a_worse_one_rolls_back() -> None:
    rng = np.random.default_rng(8)
    assert [first_decision(rng, 0.8, 0.2, 200) for _ in range(20)].count("advance") == 20
    assert [first_decision(rng, 0.2, 0.8, 200) for _ in range(20)].count("rollback") == 20


def test_the_interval_of_the_difference_is_where_the_counts_put_it() -> None:
    test = PairedGoldTest(margin=0.1)
    low, high = test.delta_interval(counts_of([True] * 80 + [False] * 20, [False] * 70 + [True] * 30))
    assert -1.0 <= low < 0.5 < high <= 1.0  # observed delta 0.8 - 0.3 = 0.5
    assert test.delta_interval(GoldCounts()) == (-1.0, 1.0)


def gold_verdict(i: int, candidate: bool, live: bool) -> events_pb2.Verdict:
    return events_pb2.Verdict(
        meta=codec.new_meta(tenant=TENANT, workflow=WORKFLOW, producer="judge"),
        verdict_id=f"g-{i}",
        adapter_id="ad-1",
        reference="gold",
        passed=candidate,
        live_passed=live,
        live_latency_ms=100.0,
        candidate_latency_ms=40.0,
    )


def gold_started() -> Router:
    router = Router(RouterConfig(min_samples_per_step=50, min_gold_samples_per_step=30))
    event = adapter_event()
    event.metrics["gate_test"] = 1.0
    router.on_adapter(event)
    return router


def test_gold_promotes_a_candidate_that_disagrees_with_live_but_is_right() -> None:
    router = gold_started()
    rollout = router.rollouts[KEY]
    assert rollout.expects_gold
    i = 0
    for _ in range(len(router.config.canary_steps) + 1):
        for _ in range(60):  # agrees with live only 20% of the time: the agreement test says inferior
            router.on_verdict(verdict(passed=i % 5 == 0))
            router.on_verdict(gold_verdict(i, candidate=i % 10 < 8, live=i % 10 < 2))
            i += 1
        moved = router.evaluate()
        assert moved, f"step {rollout.step} did not move: {rollout.evidence}"
        assert rollout.last is not None and rollout.last.evidence["test"] == 1.0
        assert rollout.last.reason.startswith("gold: superior to live")
    assert rollout.state == PROMOTED
    evidence = rollout.last.evidence
    assert (
        evidence["candidate_gold_low"] < evidence["candidate_gold_accuracy"] < evidence["candidate_gold_high"]
    )
    assert evidence["live_gold_accuracy"] < evidence["candidate_gold_accuracy"]


def test_gold_rolls_back_a_candidate_that_agrees_with_live_where_live_is_right_only() -> None:
    router = gold_started()
    for i in range(80):
        router.on_verdict(gold_verdict(i, candidate=i % 10 < 3, live=i % 10 < 9))
    router.evaluate()
    rollout = router.rollouts[KEY]
    assert rollout.state == ROLLED_BACK and rollout.last is not None
    assert rollout.last.reason.startswith("gold: inferior") and rollout.last.evidence["test"] == 1.0


def test_without_enough_gold_disagreement_holds_a_gold_gated_rollout_but_rolls_back_others() -> None:
    gold_gated = gold_started()
    for _ in range(40):
        gold_gated.on_verdict(verdict(passed=False))
    assert gold_gated.evaluate() == [] and gold_gated.rollouts[KEY].state == SHADOW
    plain = Router(RouterConfig(min_samples_per_step=50))
    plain.on_adapter(adapter_event())
    for _ in range(40):
        plain.on_verdict(verdict(passed=False))
    plain.evaluate()
    assert plain.rollouts[KEY].state == ROLLED_BACK
    assert plain.rollouts[KEY].last.evidence["test"] == 0.0  # type: ignore[union-attr]


def test_a_redelivered_gold_verdict_counts_once() -> None:
    router = gold_started()
    for _ in range(3):
        router.on_verdict(gold_verdict(1, candidate=True, live=False))
    assert router.rollouts[KEY].evidence.gold.n == 1


def test_a_restarted_router_still_waits_for_gold() -> None:
    router = gold_started()
    outputs = router.on_adapter(adapter_event("ad-2"))  # busy: ignored
    assert outputs == []
    rollout = router.rollouts[KEY]
    table = router.tables[KEY]
    event = events_pb2.RolloutEvent(
        meta=codec.new_meta(tenant=TENANT, workflow=WORKFLOW, producer="router"),
        adapter_id=rollout.adapter_id,
        to_state=SHADOW,
        evidence={"expects_gold": 1.0},
    )
    restarted = Router(router.config)
    restore(restarted, [table], [event])
    assert restarted.rollouts[WorkflowKey(TENANT, WORKFLOW)].expects_gold


@pytest.mark.parametrize("n", [0, 10])
def test_gold_evidence_is_reported_even_before_it_decides(n: int) -> None:
    evidence = gates.StepEvidence()
    for i in range(n):
        evidence.add(True, False, 40.0, 100.0)
        evidence.add_gold(str(i), True, False)
    decision = gates.evaluate(evidence, POLICY)
    assert decision.action == "hold" and decision.evidence["gold_n"] == n and decision.evidence["test"] == 0.0


def test_the_gold_test_has_its_own_margin_where_one_is_set() -> None:
    """A lenient agreement margin (0.25) need not forgive 0.2 of accuracy lost on gold."""
    lenient = gates.GatePolicy(margin=0.25)
    strict = gates.GatePolicy(margin=0.25, gold_margin=0.1)
    assert lenient.gold_test.margin == 0.25 and strict.gold_test.margin == 0.1
    config = RouterConfig(margin=0.25, gold_margin=0.1)
    assert Router(config).policy.gold_test.margin == 0.1
    counts = counts_of([i % 10 < 4 for i in range(400)], [i % 10 < 6 for i in range(400)])
    # 0.4 vs 0.6: inferior at a 0.1 margin, not at 0.25.
    assert strict.gold_test.shows_inferior(counts) and not lenient.gold_test.shows_inferior(counts)
