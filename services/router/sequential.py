"""Always-valid sequential tests for a Bernoulli pass rate: the gate math of a rollout step.

Method: a discrete-mixture likelihood-ratio martingale (Robbins 1970; the Bernoulli/beta-binomial
mixture of Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist. 2021, §3), turned into an e-process per one-sided null.

To show non-inferiority we test H0: p <= p0 (p0 = 1 - margin). For any alternative theta >= p0,
the likelihood ratio prod_i (theta/p0)^x_i ((1-theta)/(1-p0))^(1-x_i) has expectation <= 1 per
step under every p <= p0 (it is linear in p and equals 1 at p = p0), so it is a nonnegative
supermartingale under the whole composite null; so is any mixture of them over thetas >= p0. We
mix uniformly over a fixed grid of thetas in (p0, 1): an exact (not approximated) mixture, cheap
in numpy, and vectorisable over many simulated streams. By Ville's inequality
P(exists n: M_n >= 1/alpha) <= alpha under H0: the test may be checked after every verdict
(peeking is free) and still promotes a candidate worse than the margin with probability <= alpha.
The mirror test (H0: p >= p0, thetas in (0, p0)) shows inferiority, for the rollback.

Equivalently, {q : M_n(q) < 1/alpha} is a (1 - alpha) confidence sequence for p; ``lower_bound``
inverts the non-inferiority test to report its lower end as evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_GRID = 64


def _thetas(low: float, high: float, size: int) -> NDArray[np.float64]:
    """Midpoints of ``size`` equal cells of (low, high): never 0, 1 or the null value itself."""
    return low + (high - low) * (np.arange(size, dtype=np.float64) + 0.5) / size


def _log_mixture(
    n: ArrayLike, passes: ArrayLike, p0: float, thetas: NDArray[np.float64]
) -> NDArray[np.float64]:
    """log of the mean over ``thetas`` of the likelihood ratio theta vs p0 after ``passes`` of ``n``."""
    n_arr = np.asarray(n, dtype=np.float64)[..., None]
    s_arr = np.asarray(passes, dtype=np.float64)[..., None]
    log_ratio = s_arr * np.log(thetas / p0) + (n_arr - s_arr) * np.log((1.0 - thetas) / (1.0 - p0))
    top = log_ratio.max(axis=-1, keepdims=True)
    mean = np.log(np.exp(log_ratio - top).mean(axis=-1, keepdims=True)) + top
    return np.asarray(mean[..., 0], dtype=np.float64)


def log_e_noninferior(
    n: ArrayLike, passes: ArrayLike, p0: float, grid: int = DEFAULT_GRID
) -> NDArray[np.float64]:
    """log e-value against H0: p <= p0 (large = the pass rate is above p0)."""
    return _log_mixture(n, passes, p0, _thetas(p0, 1.0, grid))


def log_e_inferior(
    n: ArrayLike, passes: ArrayLike, p0: float, grid: int = DEFAULT_GRID
) -> NDArray[np.float64]:
    """log e-value against H0: p >= p0 (large = the pass rate is below p0)."""
    return _log_mixture(n, passes, p0, _thetas(0.0, p0, grid))


@dataclass(frozen=True)
class NonInferiorityTest:
    """Non-inferiority of a pass rate against ``p0`` at level ``alpha``, both directions."""

    p0: float
    alpha: float = 0.05
    grid: int = DEFAULT_GRID

    def __post_init__(self) -> None:
        if not 0.0 < self.p0 < 1.0:
            raise ValueError(f"p0 must be in (0, 1), got {self.p0} (margin must be in (0, 1))")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def log_threshold(self) -> float:
        return math.log(1.0 / self.alpha)

    def shows_noninferior(self, n: ArrayLike, passes: ArrayLike) -> NDArray[np.bool_]:
        return np.asarray(log_e_noninferior(n, passes, self.p0, self.grid) >= self.log_threshold)

    def shows_inferior(self, n: ArrayLike, passes: ArrayLike) -> NDArray[np.bool_]:
        return np.asarray(log_e_inferior(n, passes, self.p0, self.grid) >= self.log_threshold)

    def lower_bound(self, n: int, passes: int) -> float:
        """Lower end of the (1 - alpha) confidence sequence for p after ``passes`` of ``n`` (bisection)."""
        if n == 0:
            return 0.0
        low, high = 1e-6, 1.0 - 1e-6
        if not bool(log_e_noninferior(n, passes, low, self.grid) >= self.log_threshold):
            return 0.0
        for _ in range(30):  # the e-value falls as the null value q rises: the bound is where it crosses
            mid = (low + high) / 2
            if bool(log_e_noninferior(n, passes, mid, self.grid) >= self.log_threshold):
                low = mid
            else:
                high = mid
        return low

    def passes_needed(self, max_n: int) -> NDArray[np.int64]:
        """For n = 0..max_n, the fewest passes out of n that show non-inferiority (n + 1: none can).

        The e-value rises with the passes, so a vectorised bisection over n finds the cut; streams
        are then simulated by comparing running pass counts with it (tests, planning).
        """
        n = np.arange(max_n + 1)
        low, high = np.zeros_like(n), n + 1  # invariant: low fails (or is 0), high passes (or is n + 1)
        while np.any(high - low > 1):
            mid = (low + high) // 2
            ok = self.shows_noninferior(n, mid)
            high = np.where(ok, mid, high)
            low = np.where(ok, low, mid)
        first_ok = self.shows_noninferior(n, low)
        return np.where(first_ok, low, high)

    def samples_to_pass(self, rate: float, max_n: int = 100_000) -> int:
        """Verdicts needed to show non-inferiority when exactly ``rate`` of them pass (planning aid)."""
        n = np.arange(1, max_n + 1)
        hit = np.nonzero(self.shows_noninferior(n, np.floor(rate * n)))[0]
        return int(n[hit[0]]) if hit.size else -1
