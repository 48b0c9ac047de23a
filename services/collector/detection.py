"""Candidate detection: which workflows a small fine-tuned model is likely to serve well.

Every ``interval_s`` each workflow's insight over the last ``window_h`` hours is checked against
the thresholds in ``collector.detection`` (config):

- **volume**: successful live-model requests >= ``min_requests`` (enough to train and to judge);
- **template**: template stability >= ``min_template_stability`` (one kind of request);
- **output**: output consistency >= ``min_output_consistency`` (one shape of answer);
- **errors**: error rate <= ``max_error_rate`` (the live model itself copes);
- **savings**: estimated savings >= ``min_daily_savings`` USD/day (worth the training);

and it must not be busy: no rollout in shadow, canary or paused, no adapter training. A workflow
whose last candidate was rejected at the gate, failed or was rolled back is tried again once its
data has grown (**growth**: ``retry_growth`` times the live answers it had then, learning.py);
a promoted one once its live answers (the audit's included) reach ``refresh_growth`` times what
they were (**fresh data**: the next version is trained on them, and volume and savings are not
asked again); any other candidate blocks it for ``cooldown_h``. A qualifying workflow is nominated
(nomination.py) with a reason that names the numbers, which also travel as ``evidence`` in the
CandidateEvent; one that does not says how far it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from cumulus.config import DetectionConfig
from cumulus.errors import CumulusError
from cumulus.logs import get_logger
from cumulus.rollout_states import ACTIVE, PROMOTED
from services.collector.insights import Insights, WorkflowStats
from services.collector.learning import (
    ADAPTER_STATES_SQL,
    RETRYABLE,
    Attempt,
    attempts,
    last_attempts,
    retry_due,
    total_live_answers,
)
from services.collector.nomination import Nominator
from services.collector.rows import aware
from services.collector.store import ClickHouseStore

log = get_logger("collector")

_BUSY_SQL = f"""
SELECT tenant, workflow, 'rollout running' AS why FROM ({ADAPTER_STATES_SQL})
WHERE state IN {ACTIVE}
UNION ALL
SELECT tenant, workflow, 'adapter training' FROM {{db}}.adapters FINAL
WHERE status = 'training' AND updated_at >= {{since:DateTime64(3)}}
"""


@dataclass
class Assessment:
    """One workflow's check: whether it qualifies, why (not), and the numbers behind it."""

    tenant: str
    workflow: str
    qualifies: bool
    reason: str
    failed: list[str] = field(default_factory=list)
    evidence: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _dominant_shape(s: WorkflowStats) -> str:
    text = 1.0 - s.tool_call_share - s.json_share
    return max((s.tool_call_share, "tool_call"), (s.json_share, "json"), (text, "text"))[1]


def evidence_of(s: WorkflowStats) -> dict[str, float]:
    """The numbers a nomination carries (CandidateEvent.evidence)."""
    return {
        "live_requests": float(s.live_ok),
        "requests": float(s.requests),
        "template_stability": round(s.template_stability, 4),
        "output_consistency": round(s.output_consistency, 4),
        "json_share": round(s.json_share, 4),
        "tool_call_share": round(s.tool_call_share, 4),
        "distinct_outputs": float(s.distinct_outputs),
        "error_rate": round(s.error_rate, 4),
        "p95_ms": s.p95_ms,
        "est_daily_savings_usd": round(s.est_daily_savings, 4),
    }


def _volume(s: WorkflowStats, cfg: DetectionConfig) -> str:
    short = cfg.min_requests - s.live_ok
    return f"{s.live_ok} live requests (min {cfg.min_requests}" + (f": {short} more)" if short > 0 else ")")


def assess(
    s: WorkflowStats,
    cfg: DetectionConfig,
    busy: str | None = None,
    last: Attempt | None = None,
    total_live: int = 0,
    now: dt.datetime | None = None,
) -> Assessment:
    """Check one workflow against the thresholds; pure, so the rules are unit-tested directly.

    ``last``: the workflow's newest attempt, if any; ``total_live``: its live answers ever.
    """
    checks = [
        ("volume", s.live_ok >= cfg.min_requests, _volume(s, cfg)),
        (
            "template",
            s.template_stability >= cfg.min_template_stability,
            f"{s.template_stability:.0%} of requests share one template "
            f"(min {cfg.min_template_stability:.0%})",
        ),
        (
            "output",
            s.output_consistency >= cfg.min_output_consistency,
            f"{s.output_consistency:.0%} {_dominant_shape(s)} answers (min {cfg.min_output_consistency:.0%})",
        ),
        (
            "errors",
            s.error_rate <= cfg.max_error_rate,
            f"error rate {s.error_rate:.1%} (max {cfg.max_error_rate:.1%})",
        ),
        (
            "savings",
            s.est_daily_savings >= cfg.min_daily_savings,
            f"est. ${s.est_daily_savings:.2f}/day savings (min ${cfg.min_daily_savings:.2f})",
        ),
    ]
    if last is not None and last.outcome in RETRYABLE:
        checks.append(("growth", *retry_due(last, total_live, cfg.retry_growth)))
    elif last is not None and last.outcome == PROMOTED and cfg.refresh_growth is not None:
        # Served by its adapter now: volume and savings were settled; fresh live answers (the
        # audit's among them) decide when the next version is trained on them.
        checks = [check for check in checks if check[0] not in ("volume", "savings")]
        checks.append(("fresh data", *retry_due(last, total_live, cfg.refresh_growth, "retrain")))
    elif last is not None and not busy:
        since = (now or dt.datetime.now(dt.UTC)) - aware(last.nominated_at)
        if since < dt.timedelta(hours=cfg.cooldown_h):
            busy = f"nominated {since.total_seconds() / 3600:.1f} h ago (cooldown {cfg.cooldown_h:g} h)"
    failed = [name for name, ok, _ in checks if not ok]
    if busy:
        failed.append("busy")
    details = "; ".join(text for _, _, text in checks)
    if failed:
        reason = f"not a candidate ({', '.join(failed)}{': ' + busy if busy else ''}): {details}"
    else:
        reason = f"small-model candidate: {details}"
    evidence = {**evidence_of(s), "total_live_requests": float(total_live)}
    return Assessment(s.tenant, s.workflow, not failed, reason, failed, evidence)


class CandidateDetector:
    """The periodic check; nominates every qualifying workflow that is not busy."""

    def __init__(
        self, insights: Insights, nominator: Nominator, db: ClickHouseStore, cfg: DetectionConfig
    ) -> None:
        self.insights, self.nominator, self.db, self.cfg = insights, nominator, db, cfg
        self.last_checked: str | None = None
        self.last_assessments: list[Assessment] = []

    async def busy_workflows(self) -> dict[tuple[str, str], str]:
        """(tenant, workflow) -> why it must not be nominated now."""
        params = {"since": dt.datetime.now(dt.UTC) - dt.timedelta(hours=self.cfg.window_h)}
        rows = await self.db.query(_BUSY_SQL.replace("{db}", f"`{self.db.database}`"), params)
        return {(r["tenant"], r["workflow"]): r["why"] for r in rows}

    async def check_once(self) -> list[Assessment]:
        """Assess every workflow of the window; nominate those that qualify. Returns the assessments."""
        stats = await self.insights.workflows(self.cfg.window_h * 3600)
        busy = await self.busy_workflows()
        last = last_attempts(await attempts(self.db))
        totals = await total_live_answers(self.db)
        assessments = [
            assess(s, self.cfg, busy.get(key), last.get(key), totals.get(key, s.live_ok))
            for s in stats
            for key in [(s.tenant, s.workflow)]
        ]
        for a in assessments:
            if not a.qualifies:
                log.debug("detection.skipped", tenant=a.tenant, workflow=a.workflow, failed=a.failed)
                continue
            try:
                await self.nominator.nominate(a.tenant, a.workflow, "auto", a.reason, a.evidence)
            except CumulusError as exc:
                a.qualifies = False
                a.failed.append("export")
                a.reason = f"qualified, but the export failed: {exc}"
                log.warning("detection.export_failed", tenant=a.tenant, workflow=a.workflow, error=str(exc))
        self.last_checked = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.last_assessments = assessments
        return assessments

    async def run(self, stopping: asyncio.Event) -> None:
        """Check every ``interval_s`` until ``stopping``; a failed check is logged, never fatal."""
        while not stopping.is_set():
            try:
                await self.check_once()
            except CumulusError as exc:
                log.error("detection.failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.cfg.interval_s)
