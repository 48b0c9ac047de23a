"""Drift after promotion: what the collector measures (``collector.drift``) and what the router does
about it (``router.drift``). See services/collector/drift.py and services/router/drift.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cumulus.config.infrastructure import Section

SEVERITIES = ("notice", "warning", "critical")
"""Severity 1, 2, 3 by name (the DriftSignal enum's values, and the ranks thresholds give)."""


def severity_name(rank: int) -> str:
    """``notice``, ``warning`` or ``critical`` for 1..3; ``none`` for anything else (0: nothing fired)."""
    return SEVERITIES[rank - 1] if 1 <= rank <= len(SEVERITIES) else "none"


DriftAction = Literal["record", "raise_audit", "pause", "rollback"]


class Thresholds(Section):
    """The measure of one signal at or above which each severity fires; None: that level never does."""

    notice: float | None = None
    warning: float | None = None
    critical: float | None = None

    def severity(self, value: float) -> int:
        """0 (none), 1 (notice), 2 (warning) or 3 (critical): the highest level ``value`` reaches."""
        levels = (self.notice, self.warning, self.critical)
        return max(
            (i + 1 for i, bound in enumerate(levels) if bound is not None and value >= bound), default=0
        )

    @model_validator(mode="after")
    def _increasing(self) -> Thresholds:
        bounds = [b for b in (self.notice, self.warning, self.critical) if b is not None]
        if bounds != sorted(bounds) or any(b <= 0 for b in bounds):
            raise ValueError(f"drift thresholds {bounds} must be positive and increase with severity")
        return self


class DriftConfig(Section):
    """How the collector watches each promoted workflow's traffic against its adapter's training data.

    Each signal is a number measured on the traffic since promotion (at most ``window_h``), over
    the same number on the training data; the thresholds turn it into a severity."""

    enabled: bool = True
    interval_s: float = Field(default=60.0, gt=0)
    """How often every promoted workflow is checked."""
    window_h: float = Field(default=24.0, gt=0)
    """Traffic looked at: since the promotion, at most this many hours back."""
    min_requests: int = Field(default=30, ge=1)
    """Requests (answers of the adapter, for output_shape) a window needs before a signal is measured."""
    max_requests: int = Field(default=2000, ge=1)
    """The newest requests of the window read per check: the cost of a check is bounded."""
    min_feedback: int = Field(default=20, ge=1)
    """Feedback notes needed, on the adapter's answers and on live's before them, to compare them."""
    new_tools: Thresholds = Thresholds(notice=0.02, warning=0.1, critical=0.3)
    """Share of requests offering a tool the training data never had (above the holdout's own share)."""
    template: Thresholds = Thresholds(notice=0.05, warning=0.25, critical=0.5)
    """Share of requests whose system prompt the training data never had (above the holdout's own)."""
    prompt_length: Thresholds = Thresholds(notice=0.5, warning=1.0)
    """|log2| of the median prompt length over the training data's: 1.0 is twice (or half) as long."""
    output_shape: Thresholds = Thresholds(notice=0.2, warning=0.35, critical=0.6)
    """Drop in the share of the adapter's answers with the training answers' dominant shape (a
    student right 90% of the time already drops ~0.1 on its misses: that is not drift)."""
    feedback: Thresholds = Thresholds(notice=0.1, warning=0.2, critical=0.35)
    """Rise in the share of negative feedback (or corrections) on the adapter's answers over live's
    answers before the promotion."""


class DriftResponse(Section):
    """What the router does with a promoted workflow's drift signal, by its severity."""

    notice: DriftAction = "raise_audit"
    warning: DriftAction = "pause"
    critical: DriftAction = "rollback"
    raised_audit_share: float = Field(default=0.25, gt=0, le=1)
    """``raise_audit``: the workflow's audit share from then on (more evidence, sooner)."""

    def action(self, severity: int) -> DriftAction:
        """The action for severity 1..3 (notice, warning, critical)."""
        action: DriftAction = getattr(self, SEVERITIES[severity - 1])
        return action
