"""What the loop has learned per workflow: every attempt (candidate -> adapter -> rollout) and its curve.

An *attempt* is one nomination and what became of it: the student it was trained on, the dataset
size, the offline gate's score and the rollout's end. The *learning curve* of a workflow and a
student is its gated attempts in nomination order: dataset size -> score at the gate (gold
accuracy where the gate decided on gold, agreement with live otherwise). It is a query over the
rows the collector already stores (candidates, adapters, rollout_events), so there is nothing
extra to keep consistent.

Detection uses the last attempt to decide when to try again (``retry_due``): a rejected or
rolled-back workflow is retried once its data has grown ``detection.retry_growth`` times.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from cumulus.rollout_states import PROMOTED
from services.collector.insights import LIVE_ROUTES
from services.collector.store import ClickHouseStore

ADAPTER_STATES_SQL = f"""
SELECT tenant, workflow, adapter_id, argMax(to_state, occurred_at) AS state,
       argMax(from_state, occurred_at) AS came_from,
       maxIf(occurred_at, to_state = '{PROMOTED}' AND from_state != '{PROMOTED}') AS since
FROM {{db}}.rollout_events FINAL GROUP BY tenant, workflow, adapter_id
"""
"""Each adapter's latest rollout state (and the state it came from), and when it last entered
``promoted`` from another state (detection's busy check, the attempts below and the drift watch
read rollouts through it)."""

_ATTEMPTS_SQL = f"""
SELECT c.tenant AS tenant, c.workflow AS workflow, c.candidate_id AS candidate_id,
       c.occurred_at AS nominated_at, c.base_model AS student,
       toUInt64(c.train_examples + c.holdout_examples) AS examples,
       c.evidence['total_live_requests'] AS total_live,
       a.adapter_id AS adapter_id, a.status AS status, a.offline_score AS offline_score,
       a.metrics AS metrics, r.state AS rollout_state
FROM (SELECT * FROM {{db}}.candidates FINAL) AS c
LEFT JOIN (SELECT * FROM {{db}}.adapters FINAL) AS a
    ON a.tenant = c.tenant AND a.workflow = c.workflow AND a.candidate_id = c.candidate_id
LEFT JOIN ({ADAPTER_STATES_SQL}) AS r
    ON r.tenant = a.tenant AND r.adapter_id = a.adapter_id
WHERE ({{tenant:String}} = '' OR c.tenant = {{tenant:String}})
  AND ({{workflow:String}} = '' OR c.workflow = {{workflow:String}})
ORDER BY c.occurred_at, c.candidate_id
"""

# Every successful live answer the workflow ever had: what an export can draw on. From the
# per-minute view, so it is cheap; it can over-count an event captured in two batches (rare).
# Live's answers to a promoted adapter's requests (its audit) count too: they are exported as well.
_TOTAL_LIVE_SQL = f"""
SELECT tenant, workflow, toUInt64(sum(n)) AS total_live FROM (
    SELECT tenant, workflow, toInt64(sum(requests)) - toInt64(sum(errors)) AS n
    FROM {{db}}.workflow_stats_minute
    WHERE route_mode IN {LIVE_ROUTES} AND ({{tenant:String}} = '' OR tenant = {{tenant:String}})
    GROUP BY tenant, workflow
    UNION ALL
    SELECT tenant, workflow, toInt64(count()) AS n FROM {{db}}.audit_answers FINAL
    WHERE {{tenant:String}} = '' OR tenant = {{tenant:String}}
    GROUP BY tenant, workflow
)
GROUP BY tenant, workflow
"""

RETRYABLE = ("rejected", "failed", "rolled_back")


@dataclass(frozen=True)
class Attempt:
    """One nomination of a workflow and what became of it."""

    tenant: str
    workflow: str
    candidate_id: str
    nominated_at: dt.datetime
    student: str
    examples: int
    total_live: int
    """Successful live answers the workflow had when nominated (0: nominated before this was kept)."""
    adapter_id: str
    status: str
    """The adapter's: '' (not trained yet), training, ready, rejected or failed."""
    rollout_state: str
    metrics: dict[str, float]
    offline_score: float

    @property
    def outcome(self) -> str:
        """pending, training, rejected, failed, shadow, canary, paused, promoted or rolled_back."""
        if self.status in ("", "training", "rejected", "failed"):
            return self.status or "pending"
        return self.rollout_state or "ready"

    @property
    def gated(self) -> bool:
        return self.status in ("ready", "rejected")

    @property
    def test(self) -> str:
        """Which test the offline gate decided on: gold or agreement (with live)."""
        return "gold" if self.metrics.get("gate_test", 0.0) == 1.0 else "agreement"

    @property
    def score(self) -> float:
        """The gate's score: gold accuracy where the gate decided on gold, else agreement."""
        if self.test == "gold":
            return self.metrics.get("candidate_gold_accuracy", 0.0)
        return self.metrics.get("gate_agreement", self.offline_score)

    def point(self) -> dict[str, Any]:
        """One point of the learning curve."""
        return {
            "examples": self.examples,
            "score": round(self.score, 4),
            "test": self.test,
            "candidate_gold_accuracy": self.metrics.get("candidate_gold_accuracy"),
            "live_gold_accuracy": self.metrics.get("live_gold_accuracy"),
            "gold_rows": int(self.metrics.get("gold_rows", 0)),
            "agreement": self.metrics.get("gate_agreement", self.offline_score),
            "passed": self.status == "ready",
            "outcome": self.outcome,
            "adapter_id": self.adapter_id,
            "candidate_id": self.candidate_id,
            "nominated_at": self.nominated_at.isoformat(),
        }


async def attempts(db: ClickHouseStore, tenant: str = "", workflow: str = "") -> list[Attempt]:
    """Every attempt, oldest first."""
    sql = _ATTEMPTS_SQL.replace("{db}", f"`{db.database}`")
    rows = await db.query(sql, {"tenant": tenant, "workflow": workflow})
    return [
        Attempt(
            tenant=r["tenant"],
            workflow=r["workflow"],
            candidate_id=r["candidate_id"],
            nominated_at=r["nominated_at"],
            student=r["student"],
            examples=int(r["examples"]),
            total_live=int(r["total_live"] or 0),
            adapter_id=r["adapter_id"],
            status=r["status"],
            rollout_state=r["rollout_state"],
            metrics={k: float(v) for k, v in (r["metrics"] or {}).items()},
            offline_score=float(r["offline_score"] or 0.0),
        )
        for r in rows
    ]


async def total_live_answers(db: ClickHouseStore, tenant: str = "") -> dict[tuple[str, str], int]:
    """(tenant, workflow) -> successful live answers ever captured."""
    rows = await db.query(_TOTAL_LIVE_SQL.replace("{db}", f"`{db.database}`"), {"tenant": tenant})
    return {(r["tenant"], r["workflow"]): int(r["total_live"]) for r in rows}


def learning_curves(history: list[Attempt]) -> list[dict[str, Any]]:
    """Per (tenant, workflow, student): its gated attempts as points, in nomination order."""
    curves: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for attempt in history:
        if attempt.gated:
            curves[(attempt.tenant, attempt.workflow, attempt.student)].append(attempt.point())
    return [
        {"tenant": tenant, "workflow": workflow, "student": student, "points": points}
        for (tenant, workflow, student), points in curves.items()
    ]


def last_attempts(history: list[Attempt]) -> dict[tuple[str, str], Attempt]:
    """(tenant, workflow) -> its newest attempt."""
    return {(a.tenant, a.workflow): a for a in history}  # oldest first: the newest wins


def retry_due(last: Attempt, total_live: int, growth: float, verb: str = "retry") -> tuple[bool, str]:
    """Whether a workflow whose ``last`` attempt failed has grown enough to try again, and why (not).

    Growth is measured in successful live answers (what an export draws on) against what the
    workflow had at the last nomination; an attempt from before that was kept uses its dataset size.
    """
    before = last.total_live or last.examples
    needed = max(int(before * growth + 0.999999), before + 1)
    ready = total_live >= needed
    verb = f"{verb}ing" if ready else verb
    return ready, (
        f"last candidate {last.outcome} at {last.examples} examples ({last.test} score "
        f"{last.score:.2f}); {total_live} live answers now, {verb} at {needed} (x{growth:g})"
        + ("" if ready else f": {needed - total_live} more")
    )
