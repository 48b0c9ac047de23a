"""The gate math on synthetic verdict streams: error rates and sample sizes, measured by simulation.

Streams are simulated vectorised: a step's decision only depends on the running pass count, so
``passes_needed`` (the fewest passes out of n that show non-inferiority) turns a whole batch of
streams into one comparison.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.router.gates import GatePolicy, StepEvidence, evaluate
from services.router.sequential import NonInferiorityTest, log_e_inferior, log_e_noninferior

P0 = 0.9  # default margin 0.1
ALPHA = 0.05
MIN_SAMPLES = 100
HORIZON = 3000
ROLLOUTS = 2000
STEPS = 5  # shadow + four canary steps, each gated on its own verdicts


def _steps_promoted(rate: float, rng: np.random.Generator, *, steps: int = STEPS) -> np.ndarray:
    """For each simulated rollout, whether every one of ``steps`` gates advanced within HORIZON."""
    test = NonInferiorityTest(P0, ALPHA)
    needed = test.passes_needed(HORIZON)[1:]
    n = np.arange(1, HORIZON + 1)
    promoted = np.ones(ROLLOUTS, dtype=bool)
    for _ in range(steps):
        passes = np.cumsum(rng.random((ROLLOUTS, HORIZON)) < rate, axis=1, dtype=np.int32)
        advanced = (passes >= needed) & (n >= MIN_SAMPLES)
        promoted &= advanced.any(axis=1)
    return promoted


def test_one_step_at_the_margin_advances_at_most_alpha_of_the_time() -> None:
    """Worst case of the null (p exactly 1 - margin), checked after every verdict: still <= alpha."""
    advanced = _steps_promoted(P0, np.random.default_rng(7), steps=1)
    print(f"false advance of one step at p = p0: {advanced.mean():.4f} over {ROLLOUTS} streams")
    assert advanced.mean() <= ALPHA


def test_a_candidate_worse_than_the_margin_is_almost_never_promoted() -> None:
    promoted = _steps_promoted(P0 - 0.02, np.random.default_rng(11))
    print(f"false promotion at p = {P0 - 0.02}: {promoted.mean():.4f} over {ROLLOUTS} rollouts")
    assert promoted.mean() <= ALPHA


@pytest.mark.parametrize(("rate", "documented_n"), [(1.0, 100), (0.98, 300)])
def test_an_equal_candidate_advances_each_step_within_the_documented_sample(
    rate: float, documented_n: int
) -> None:
    """An equal candidate (judge agreement ~1; 0.98 allows judge noise) clears a step in <= documented_n."""
    test = NonInferiorityTest(P0, ALPHA)
    needed = test.passes_needed(documented_n)[1:]
    n = np.arange(1, documented_n + 1)
    passes = np.cumsum(np.random.default_rng(3).random((ROLLOUTS, documented_n)) < rate, axis=1)
    advanced = ((passes >= needed) & (n >= MIN_SAMPLES)).any(axis=1)
    first = np.argmax((passes >= needed) & (n >= MIN_SAMPLES), axis=1) + 1
    median = np.median(first[advanced])
    print(f"p={rate}: advanced within {documented_n}: {advanced.mean():.4f}, median n {median}")
    assert advanced.mean() >= 0.99


def test_passes_needed_is_the_exact_cut_of_the_e_value() -> None:
    test = NonInferiorityTest(P0, ALPHA)
    needed = test.passes_needed(500)
    for n in (43, 50, 100, 250, 500):
        assert test.shows_noninferior(n, needed[n])
        assert not test.shows_noninferior(n, needed[n] - 1)
    assert needed[10] == 11  # ten verdicts can never show it: the minimum sample is built in


def test_the_lower_bound_brackets_the_truth_and_tightens() -> None:
    test = NonInferiorityTest(P0, ALPHA)
    assert 0.85 < test.lower_bound(2000, 1900) < 0.95
    assert test.lower_bound(200, 190) < test.lower_bound(2000, 1900)
    assert test.lower_bound(0, 0) == 0.0


def test_a_broken_candidate_shows_inferiority_quickly() -> None:
    assert log_e_inferior(10, 0, P0) >= np.log(1 / ALPHA)
    assert log_e_noninferior(10, 0, P0) < 0


def test_a_guardrail_breach_rolls_back_at_the_first_evaluation_that_sees_it() -> None:
    policy = GatePolicy(guardrail_min_samples=20, max_error_rate=0.05)
    evidence = StepEvidence()
    for _ in range(19):
        evidence.add(True, False, 10.0, 20.0)
    assert evaluate(evidence, policy).action == "hold"
    evidence.add(False, True, 0.0, 20.0)  # one error in 20: 5%, not above the limit
    assert evaluate(evidence, policy).action == "hold"
    evidence.add(False, True, 0.0, 20.0)
    decision = evaluate(evidence, policy)
    assert decision.action == "rollback" and decision.reason.startswith("guardrail: candidate error rate")
    assert decision.evidence["error_rate"] == pytest.approx(2 / 21)


def test_a_slow_candidate_trips_the_latency_guardrail() -> None:
    policy = GatePolicy(guardrail_min_samples=20, max_p95_latency_ratio=2.0)
    evidence = StepEvidence()
    for _ in range(20):
        evidence.add(True, False, 50.0, 20.0)
    decision = evaluate(evidence, policy)
    assert decision.action == "rollback" and "p95" in decision.reason
    assert decision.evidence["candidate_p95_ms"] == 50.0 and decision.evidence["live_p95_ms"] == 20.0


def test_the_gate_needs_the_minimum_sample_even_when_the_test_is_convinced() -> None:
    policy = GatePolicy(min_samples=100)
    evidence = StepEvidence()
    for _ in range(99):
        evidence.add(True, False, 10.0, 20.0)
    assert evaluate(evidence, policy).action == "hold"
    evidence.add(True, False, 10.0, 20.0)
    decision = evaluate(evidence, policy)
    assert decision.action == "advance"
    assert decision.evidence["lower_bound"] > P0


def test_a_good_candidate_is_rarely_rolled_back_by_the_inferiority_test() -> None:
    """Both tests run on the same stream; the one that fires first decides the step."""
    test, horizon = NonInferiorityTest(P0, ALPHA), 500
    needed = test.passes_needed(horizon)[1:]
    cut = np.full(horizon, -1)  # most passes out of n that still show inferiority
    for n_ in range(1, horizon + 1):
        shown = np.nonzero(log_e_inferior(n_, np.arange(n_ + 1), P0) >= test.log_threshold)[0]
        cut[n_ - 1] = shown.max() if shown.size else -1
    n = np.arange(1, horizon + 1)
    passes = np.cumsum(np.random.default_rng(5).random((ROLLOUTS, horizon)) < 0.95, axis=1)
    advance = (passes >= needed) & (n >= MIN_SAMPLES)
    inferior = passes <= cut
    t_advance = np.where(advance.any(axis=1), advance.argmax(axis=1), horizon)
    t_inferior = np.where(inferior.any(axis=1), inferior.argmax(axis=1), horizon)
    rolled_back = (t_inferior < t_advance).mean()
    print(f"false rollback of one step at p = 0.95: {rolled_back:.4f}")
    assert rolled_back <= 0.02
