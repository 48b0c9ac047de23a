"""The gate of one rollout step: the verdicts seen in the step, and what they say to do next.

Order of checks at each evaluation (after every batch of verdicts, so peeking is constant):
1. Guardrails, once ``guardrail_min_samples`` verdicts are in: the candidate's error rate above
   ``max_error_rate``, or its p95 latency above ``max_p95_latency_ratio`` x the live model's, rolls
   back at once. They are deliberately blunt thresholds, not tests: a broken adapter must go fast.
2. Inferiority shown by the sequential test (services/router/sequential.py) rolls back.
3. Non-inferiority shown, with at least ``min_samples`` verdicts, advances.
4. ``max_samples`` without a conclusion is inconclusive: a step in progress rolls back (the
   candidate could not show it is good enough); a promoted adapter's audit starts a new window.
Otherwise the step holds. Every decision carries its numbers (the rollout event's evidence).

Gold (feedback on the shadowed requests, the judge's ``reference = "gold"`` verdicts) comes
before agreement: once a step has ``min_gold_samples`` gold verdicts, the paired test of
services/router/paired.py decides instead of checks 2-3 (inferior to live on gold by more than the
margin rolls back; non-inferior advances, even where the candidate disagrees with live). A step
that has seen any gold, or whose adapter was gated on gold offline, never rolls back on
disagreement alone: it holds for gold (a candidate that is right where live is wrong disagrees
with live). The decision's evidence says which test decided (``test``: 1 gold, 0 agreement).

Rolled out over an earlier version, the step is decided on agreement with that incumbent, and
both versions are also graded against the live model on the table's anchor share (``LiveCheck``):
once each has ``guardrail_min_samples`` such verdicts, a candidate shown (at ``alpha``) to agree
with live less than the incumbent's lower confidence bound less the margin rolls back, so a chain
of versions each close to the one before cannot drift away from live unnoticed. Like disagreement,
it never rolls back a step that has gold or an adapter gated on gold: gold may part from live.

Sample sizes at the defaults (margin 0.1, alpha 0.05; ``NonInferiorityTest.samples_to_pass``),
verdicts one step needs when a share r of them pass: r=1.0: 43, 0.99: 66, 0.98: 85, 0.97: 120,
0.95: 255; below 0.9 it never advances. With ``min_samples`` 100 an equal candidate (agreement
~1) clears each step in 100 verdicts, so shadow + 4 canary steps promote after ~500 verdicts
(tests/unit/router/test_sequential.py measures it). Two straight failures at the start of a step
already show inferiority; a candidate erroring on every request trips the guardrail at the 20th. A
candidate at exactly the margin is rolled back (instead of advanced) in ~3% of steps, at 0.95 in
0.4%, at 0.98 practically never (simulated, 2,000 streams).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from services.router.paired import GoldCounts, PairedGoldTest
from services.router.sequential import NonInferiorityTest, log_e_inferior, log_e_noninferior

Action = Literal["hold", "advance", "rollback", "inconclusive"]


@dataclass(frozen=True)
class GatePolicy:
    """The thresholds of every step's gate (from RouterConfig)."""

    margin: float = 0.1
    alpha: float = 0.05
    min_samples: int = 100
    max_samples: int = 5000
    max_error_rate: float = 0.05
    max_p95_latency_ratio: float = 2.0
    guardrail_min_samples: int = 20
    min_gold_samples: int = 30
    gold_margin: float | None = None
    """The paired gold test's margin (accuracy points); None: ``margin``."""

    @property
    def test(self) -> NonInferiorityTest:
        return NonInferiorityTest(p0=1.0 - self.margin, alpha=self.alpha)

    @property
    def gold_test(self) -> PairedGoldTest:
        margin = self.margin if self.gold_margin is None else self.gold_margin
        return PairedGoldTest(margin=margin, alpha=self.alpha)


@dataclass
class LiveCheck:
    """Agreement with the live model of a candidate and of the incumbent version it is rolled out
    over, during one step (both from the anchor's copies to live)."""

    candidate_n: int = 0
    candidate_agreed: int = 0
    incumbent_n: int = 0
    incumbent_agreed: int = 0

    def add(self, of_candidate: bool, agreed: bool) -> None:
        if of_candidate:
            self.candidate_n += 1
            self.candidate_agreed += int(agreed)
        else:
            self.incumbent_n += 1
            self.incumbent_agreed += int(agreed)

    def verdict(self, policy: GatePolicy) -> tuple[bool, dict[str, float]]:
        """Whether the candidate is shown to agree with live by more than the margin less than the
        incumbent does (see the module docstring), and the numbers."""
        if not self.candidate_n and not self.incumbent_n:
            return False, {}
        numbers = {
            "live_check_candidate_n": float(self.candidate_n),
            "live_check_candidate_rate": self.candidate_agreed / max(self.candidate_n, 1),
            "live_check_incumbent_n": float(self.incumbent_n),
            "live_check_incumbent_rate": self.incumbent_agreed / max(self.incumbent_n, 1),
        }
        if min(self.candidate_n, self.incumbent_n) < policy.guardrail_min_samples:
            return False, numbers  # the bound below is a bisection: not worth it every second yet
        test = policy.test
        floor = numbers["live_check_floor"] = (
            test.lower_bound(self.incumbent_n, self.incumbent_agreed) - policy.margin
        )
        if floor <= 0:
            return False, numbers
        log_e = float(log_e_inferior(self.candidate_n, self.candidate_agreed, floor))
        return log_e >= test.log_threshold, numbers


@dataclass
class StepEvidence:
    """Verdicts of the candidate seen during the current step."""

    n: int = 0
    passes: int = 0
    errors: int = 0
    candidate_latency_ms: list[float] = field(default_factory=list)
    live_latency_ms: list[float] = field(default_factory=list)
    gold: GoldCounts = field(default_factory=GoldCounts)
    live_check: LiveCheck = field(default_factory=LiveCheck)
    _gold_seen: set[str] = field(default_factory=set)

    def add_gold(self, verdict_id: str, candidate_right: bool, live_right: bool) -> None:
        """One gold verdict; a redelivered one (same id) counts once."""
        if verdict_id in self._gold_seen:
            return
        self._gold_seen.add(verdict_id)
        self.gold.add(candidate_right, live_right)

    def add(self, passed: bool, candidate_error: bool, candidate_ms: float, live_ms: float) -> None:
        self.n += 1
        self.passes += int(passed)
        self.errors += int(candidate_error)
        if not candidate_error and candidate_ms > 0:
            self.candidate_latency_ms.append(candidate_ms)
        if live_ms > 0:
            self.live_latency_ms.append(live_ms)


@dataclass(frozen=True)
class GateDecision:
    action: Action
    reason: str
    evidence: dict[str, float]


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else 0.0


def evaluate(evidence: StepEvidence, policy: GatePolicy, *, expects_gold: bool = False) -> GateDecision:
    """What the step's verdicts so far say to do (see the module docstring for the order).

    ``expects_gold``: the adapter was gated on gold offline, so disagreement alone never rolls back.
    """
    test = policy.test
    n, passes = evidence.n, evidence.passes
    cand_p95, live_p95 = _p95(evidence.candidate_latency_ms), _p95(evidence.live_latency_ms)
    numbers = {
        "n": float(n),
        "passes": float(passes),
        "pass_rate": passes / n if n else 0.0,
        "threshold": test.p0,
        "alpha": policy.alpha,
        "log_e_noninferior": float(log_e_noninferior(n, passes, test.p0)),
        "log_e_inferior": float(log_e_inferior(n, passes, test.p0)),
        "log_e_needed": test.log_threshold,
        "lower_bound": test.lower_bound(n, passes),
        "error_rate": evidence.errors / n if n else 0.0,
        "candidate_p95_ms": cand_p95,
        "live_p95_ms": live_p95,
    }
    if n >= policy.guardrail_min_samples:
        if numbers["error_rate"] > policy.max_error_rate:
            return GateDecision(
                "rollback",
                f"guardrail: candidate error rate {numbers['error_rate']:.3f} > {policy.max_error_rate}",
                numbers,
            )
        enough_latencies = min(len(evidence.candidate_latency_ms), len(evidence.live_latency_ms))
        limit = policy.max_p95_latency_ratio * live_p95
        if enough_latencies >= policy.guardrail_min_samples and live_p95 > 0 and cand_p95 > limit:
            return GateDecision(
                "rollback",
                f"guardrail: candidate p95 {cand_p95:.0f} ms > {policy.max_p95_latency_ratio} x live p95 "
                f"{live_p95:.0f} ms",
                numbers,
            )
    drifted, live_numbers = evidence.live_check.verdict(policy)
    numbers.update(live_numbers)
    if drifted and not (expects_gold or evidence.gold.n):  # gold may rightly part from live
        return GateDecision(
            "rollback",
            f"against live: candidate agrees with live {numbers['live_check_candidate_rate']:.3f} "
            f"(n={evidence.live_check.candidate_n}) vs the incumbent's "
            f"{numbers['live_check_incumbent_rate']:.3f} (n={evidence.live_check.incumbent_n}), "
            f"below its floor {numbers['live_check_floor']:.3f} at alpha={policy.alpha}",
            numbers,
        )
    gold = evidence.gold
    numbers.update(policy.gold_test.evidence(gold), test=0.0)
    if gold.n >= policy.min_gold_samples:
        decided = _gold_decision(gold, policy, numbers)
        if decided is not None:
            return decided
    elif numbers["log_e_inferior"] >= test.log_threshold and not (expects_gold or gold.n):
        return GateDecision(
            "rollback", f"inferior: pass rate below {test.p0:.3f} at alpha={policy.alpha}", numbers
        )
    elif n >= policy.min_samples and numbers["log_e_noninferior"] >= test.log_threshold:
        return GateDecision(
            "advance", f"non-inferior: pass rate >= {test.p0:.3f} at alpha={policy.alpha}", numbers
        )
    if n >= policy.max_samples:
        return GateDecision("inconclusive", f"inconclusive after {n} verdicts", numbers)
    return GateDecision("hold", "collecting verdicts", numbers)


def _gold_decision(gold: GoldCounts, policy: GatePolicy, numbers: dict[str, float]) -> GateDecision | None:
    """The paired gold test's decision, or None while it has not concluded."""
    test = policy.gold_test
    accuracies = (
        f"candidate {numbers['candidate_gold_accuracy']:.3f} vs live {numbers['live_gold_accuracy']:.3f} "
        f"on {gold.n} gold requests"
    )
    numbers["test"] = 1.0
    if test.shows_inferior(gold):
        return GateDecision(
            "rollback", f"gold: inferior to live by more than {policy.margin} ({accuracies})", numbers
        )
    if test.shows_noninferior(gold):
        better = "superior to" if numbers["gold_superior"] else "non-inferior to"
        return GateDecision(
            "advance", f"gold: {better} live at margin {policy.margin} ({accuracies})", numbers
        )
    numbers["test"] = 0.0
    return None
