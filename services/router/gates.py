"""The gate of one rollout step: the verdicts seen in the step, and what they say to do next.

Order of checks at each evaluation (after every batch of verdicts, so peeking is constant):
1. Guardrails, once ``guardrail_min_samples`` verdicts are in: the candidate's error rate above
   ``max_error_rate``, or its p95 latency above ``max_p95_latency_ratio`` x the live model's, rolls
   back at once. They are deliberately blunt thresholds, not tests: a broken adapter must go fast.
2. Inferiority shown by the sequential test (services/router/sequential.py) rolls back.
3. Non-inferiority shown, with at least ``min_samples`` verdicts, advances.
4. ``max_samples`` without a conclusion rolls back (the candidate could not show it is good enough).
Otherwise the step holds. Every decision carries its numbers (the rollout event's evidence).

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

from services.router.sequential import NonInferiorityTest, log_e_inferior, log_e_noninferior

Action = Literal["hold", "advance", "rollback"]


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

    @property
    def test(self) -> NonInferiorityTest:
        return NonInferiorityTest(p0=1.0 - self.margin, alpha=self.alpha)


@dataclass
class StepEvidence:
    """Verdicts of the candidate seen during the current step."""

    n: int = 0
    passes: int = 0
    errors: int = 0
    candidate_latency_ms: list[float] = field(default_factory=list)
    live_latency_ms: list[float] = field(default_factory=list)

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


def evaluate(evidence: StepEvidence, policy: GatePolicy) -> GateDecision:
    """What the step's verdicts so far say to do (see the module docstring for the order)."""
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
    if numbers["log_e_inferior"] >= test.log_threshold:
        return GateDecision(
            "rollback", f"inferior: pass rate below {test.p0:.3f} at alpha={policy.alpha}", numbers
        )
    if n >= policy.min_samples and numbers["log_e_noninferior"] >= test.log_threshold:
        return GateDecision(
            "advance", f"non-inferior: pass rate >= {test.p0:.3f} at alpha={policy.alpha}", numbers
        )
    if n >= policy.max_samples:
        return GateDecision("rollback", f"inconclusive after {n} verdicts", numbers)
    return GateDecision("hold", "collecting verdicts", numbers)
