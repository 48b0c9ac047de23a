"""The gold gate: candidate vs live accuracy on the same requests, an always-valid paired test.

Each gold verdict is one request graded twice against its feedback: candidate right or not (c),
live right or not (l). The difference d = c - l is in {-1, 0, 1}; y = (d + 1) / 2 is in
{0, 1/2, 1} with mean (1 + delta) / 2, where delta = candidate accuracy - live accuracy. So

- non-inferiority (delta > -margin) is H0: E[y] <= m with m = (1 - margin) / 2,
- superiority (delta > 0) is the same test with m = 1/2,
- inferiority (delta < -margin, the rollback) is H0: E[y] >= m.

Test by betting (Waudby-Smith & Ramdas, "Estimating means of bounded random variables by
betting", JRSS-B 2024): for a bet lambda in [0, 1/m) the wealth prod_i (1 + lambda (y_i - m)) is
a nonnegative martingale with expectation <= 1 under H0 (each factor has mean 1 + lambda(E[y] - m)
<= 1), and so is the mean of it over a fixed grid of bets. Ville's inequality makes the test
valid at every peek, like the agreement test (services/router/sequential.py). The wealth depends
only on how many losses, ties and wins there were, so the gate keeps three counts, not a sequence.
Inverting the test over m gives a confidence sequence for delta (``delta_interval``); the same
inversion of the Bernoulli mixture gives each model's own gold accuracy interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.router.sequential import NonInferiorityTest

_GRID = 32
_MAX_BET = 0.5
"""Bets are spread over (0, 0.5 x the largest allowed): all-in bets are ruined by one loss."""


@dataclass
class GoldCounts:
    """Gold verdicts of one step: per request, candidate right (c) and live right (l)."""

    losses: int = 0
    """c = 0, l = 1."""
    ties: int = 0
    wins: int = 0
    """c = 1, l = 0."""
    candidate_right: int = 0
    live_right: int = 0

    @property
    def n(self) -> int:
        return self.losses + self.ties + self.wins

    def add(self, candidate: bool, live: bool) -> None:
        d = int(candidate) - int(live)
        if d < 0:
            self.losses += 1
        elif d > 0:
            self.wins += 1
        else:
            self.ties += 1
        self.candidate_right += int(candidate)
        self.live_right += int(live)


def log_wealth(counts: GoldCounts, m: float, direction: int) -> float:
    """log of the mean wealth over the bet grid against H0: E[y] <= m (direction +1) or >= m (-1)."""
    if not 0.0 < m < 1.0:
        raise ValueError(f"the null mean must be in (0, 1), got {m}")
    limit = 1.0 / m if direction > 0 else 1.0 / (1.0 - m)
    bets = _MAX_BET * limit * (np.arange(_GRID) + 0.5) / _GRID
    log_w = np.zeros(_GRID)
    for y, count in ((0.0, counts.losses), (0.5, counts.ties), (1.0, counts.wins)):
        if count:
            log_w += count * np.log1p(direction * bets * (y - m))
    top = float(log_w.max())
    return top + math.log(float(np.mean(np.exp(log_w - top))))


@dataclass(frozen=True)
class PairedGoldTest:
    """Candidate vs live gold accuracy at ``margin`` and ``alpha`` (see the module docstring)."""

    margin: float
    alpha: float = 0.05

    @property
    def log_threshold(self) -> float:
        return math.log(1.0 / self.alpha)

    def _null(self, delta: float) -> float:
        return (1.0 + delta) / 2.0

    def shows_noninferior(self, counts: GoldCounts) -> bool:
        return log_wealth(counts, self._null(-self.margin), +1) >= self.log_threshold

    def shows_inferior(self, counts: GoldCounts) -> bool:
        return log_wealth(counts, self._null(-self.margin), -1) >= self.log_threshold

    def shows_superior(self, counts: GoldCounts) -> bool:
        return log_wealth(counts, 0.5, +1) >= self.log_threshold

    def delta_interval(self, counts: GoldCounts) -> tuple[float, float]:
        """(1 - alpha) confidence sequence for candidate minus live accuracy (bisection per end)."""
        if counts.n == 0:
            return (-1.0, 1.0)
        return (self._end(counts, +1), self._end(counts, -1))

    def _end(self, counts: GoldCounts, direction: int) -> float:
        # The null values a test rejects lie beyond the interval; its end is where rejection stops.
        inside, outside = (1.0 - 1e-6, 1e-6) if direction > 0 else (1e-6, 1.0 - 1e-6)
        if log_wealth(counts, outside, direction) < self.log_threshold:
            return -1.0 if direction > 0 else 1.0
        for _ in range(30):
            mid = (inside + outside) / 2
            if log_wealth(counts, mid, direction) >= self.log_threshold:
                outside = mid
            else:
                inside = mid
        return 2.0 * outside - 1.0

    def evidence(self, counts: GoldCounts) -> dict[str, float]:
        """The numbers of the gold test, for the rollout event and `cumulus rollout list`."""
        n = counts.n
        low, high = self.delta_interval(counts)
        accuracy = NonInferiorityTest(p0=0.5, alpha=self.alpha)
        numbers = {
            "gold_n": float(n),
            "gold_wins": float(counts.wins),
            "gold_losses": float(counts.losses),
            "delta_low": low,
            "delta_high": high,
            "gold_superior": float(self.shows_superior(counts)),
        }
        for side, right in (("candidate", counts.candidate_right), ("live", counts.live_right)):
            numbers[f"{side}_gold_accuracy"] = right / n if n else 0.0
            numbers[f"{side}_gold_low"] = accuracy.lower_bound(n, right)
            numbers[f"{side}_gold_high"] = 1.0 - accuracy.lower_bound(n, n - right)
        return numbers
