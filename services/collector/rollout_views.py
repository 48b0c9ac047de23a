"""What the dashboard shows of adapters and rollouts, read from ClickHouse.

A rollout is the history of its ``rollout_events`` (every transition the router published, with
the traffic share after it) plus the judge's verdicts on its adapter between the first transition
and the last (or now, while it is still running), bucketed into a pass rate over time. Buckets are
sized to the rollout's span, so a rollout of two minutes still draws a line (5 s buckets) and one
of a day does not send thousands of points.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from services.collector.store import ClickHouseStore

FINISHED = ("promoted", "rolled_back")
"""Terminal rollout states (services/router/rollout.py): nothing happens after them."""
BUCKET_STEPS_S = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
MAX_BUCKETS = 60

_ADAPTERS_SQL = """
SELECT tenant, workflow, adapter_id, candidate_id, dataset_id, base_model, status, progress,
       artifact_uri, lora_task_id, version, offline_score, gate_passed, metrics, error, updated_at
FROM {db}.adapters FINAL
WHERE {workflow:String} = '' OR workflow = {workflow:String}
ORDER BY updated_at DESC, adapter_id LIMIT {limit:UInt32}
"""

# The whole history of the `limit` rollouts that moved most recently within the window.
_TRANSITIONS_SQL = """
SELECT tenant, workflow, rollout_id, adapter_id, occurred_at, from_state, to_state, step, weight,
       reason, actor, evidence
FROM {db}.rollout_events FINAL
WHERE (tenant, rollout_id) IN (
    SELECT tenant, rollout_id FROM {db}.rollout_events
    WHERE occurred_at >= {since:DateTime64(3)} AND ({workflow:String} = '' OR workflow = {workflow:String})
    GROUP BY tenant, rollout_id ORDER BY max(occurred_at) DESC LIMIT {limit:UInt32})
ORDER BY occurred_at, step, event_id
"""

_PASS_RATE_SQL = """
SELECT toStartOfInterval(occurred_at, toIntervalSecond({bucket:UInt32})) AS t,
       countIf(reference != 'gold') AS n, countIf(reference != 'gold' AND passed) AS agreed,
       countIf(reference != 'gold' AND candidate_error) AS errors,
       countIf(reference = 'gold') AS gold_n, countIf(reference = 'gold' AND passed) AS gold_candidate,
       countIf(reference = 'gold' AND live_passed) AS gold_live
FROM {db}.verdicts FINAL
WHERE tenant = {tenant:String} AND workflow = {workflow:String} AND adapter_id = {adapter:String}
  AND occurred_at >= {since:DateTime64(3)} AND occurred_at <= {until:DateTime64(3)}
GROUP BY t ORDER BY t
"""


def iso(value: dt.datetime) -> str:
    """A ClickHouse UTC timestamp as ISO 8601 with milliseconds (what JavaScript's Date parses)."""
    return _naive(value).replace(tzinfo=dt.UTC).isoformat(timespec="milliseconds")


def bucket_seconds(span_s: float) -> int:
    """The smallest step of ``BUCKET_STEPS_S`` that cuts ``span_s`` into at most ``MAX_BUCKETS``."""
    for step in BUCKET_STEPS_S:
        if span_s / step <= MAX_BUCKETS:
            return step
    return BUCKET_STEPS_S[-1]


@dataclass
class RolloutHistory:
    """One rollout as the dashboard draws it; ``traffic`` and ``pass_rate`` are chart points."""

    tenant: str
    workflow: str
    rollout_id: str
    adapter_id: str
    state: str
    step: int
    weight: float
    started_at: str
    until: str
    """The last transition of a finished rollout, else now: the right edge of its charts."""
    finished: bool
    bucket_s: int
    transitions: list[dict[str, Any]]
    traffic: list[dict[str, Any]]
    """(t, weight) after each transition, then the last weight again at ``until``: a step chart."""
    pass_rate: list[dict[str, Any]] = field(default_factory=list)
    verdicts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def shape_rollouts(rows: list[dict[str, Any]], now: dt.datetime) -> list[RolloutHistory]:
    """Group transition rows (ordered by time) into rollouts, the most recently moved first."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["tenant"], row["rollout_id"]), []).append(row)
    out = [_history(group, now) for group in grouped.values()]
    return sorted(out, key=lambda r: (r.transitions[-1]["t"], r.rollout_id), reverse=True)


def _history(rows: list[dict[str, Any]], now: dt.datetime) -> RolloutHistory:
    first, last = rows[0], rows[-1]
    started, moved = _naive(first["occurred_at"]), _naive(last["occurred_at"])
    finished = last["to_state"] in FINISHED
    until = moved if finished else max(_naive(now), moved)
    transitions = [
        {
            "t": iso(r["occurred_at"]),
            "from_state": r["from_state"],
            "to_state": r["to_state"],
            "step": int(r["step"]),
            "weight": float(r["weight"]),
            "reason": r["reason"],
            "actor": r["actor"],
            "evidence": {k: float(v) for k, v in r["evidence"].items()},
        }
        for r in rows
    ]
    traffic = [{"t": t["t"], "weight": t["weight"], "state": t["to_state"]} for t in transitions]
    if iso(until) != traffic[-1]["t"]:
        traffic.append({"t": iso(until), "weight": traffic[-1]["weight"], "state": last["to_state"]})
    return RolloutHistory(
        tenant=first["tenant"],
        workflow=first["workflow"],
        rollout_id=first["rollout_id"],
        adapter_id=first["adapter_id"],
        state=last["to_state"],
        step=int(last["step"]),
        weight=float(last["weight"]),
        started_at=iso(started),
        until=iso(until),
        finished=finished,
        bucket_s=bucket_seconds((until - started).total_seconds()),
        transitions=transitions,
        traffic=traffic,
    )


def _naive(value: dt.datetime) -> dt.datetime:
    # clickhouse-connect may answer naive or aware UTC datetimes; compare them as naive UTC.
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def pass_rate_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Verdict buckets as chart points (buckets without verdicts are absent).

    ``pass_rate`` is the bucket's agreement with live; ``gold_candidate_accuracy`` and
    ``gold_live_accuracy`` are both models' accuracy on the gold verdicts so far (cumulative: a
    bucket holds few gold verdicts). Agreement-only buckets carry None for the gold ones.
    """
    points, gold_n, gold_candidate, gold_live = [], 0, 0, 0
    for r in rows:
        n, bucket_gold = int(r["n"]), int(r.get("gold_n", 0))
        if n == 0 and bucket_gold == 0:
            continue
        gold_n += bucket_gold
        gold_candidate += int(r.get("gold_candidate", 0))
        gold_live += int(r.get("gold_live", 0))
        points.append(
            {
                "t": iso(r["t"]),
                "n": n,
                "passed": int(r["agreed"]),
                "errors": int(r["errors"]),
                "pass_rate": int(r["agreed"]) / n if n else None,
                "gold_n": gold_n,
                "gold_candidate_accuracy": gold_candidate / gold_n if gold_n else None,
                "gold_live_accuracy": gold_live / gold_n if gold_n else None,
            }
        )
    return points


def verdict_totals(points: list[dict[str, Any]]) -> dict[str, Any]:
    n, passed = sum(p["n"] for p in points), sum(p["passed"] for p in points)
    last = points[-1] if points else {}
    return {
        "n": n,
        "passed": passed,
        "pass_rate": passed / n if n else None,
        "gold_n": last.get("gold_n", 0),
        "gold_candidate_accuracy": last.get("gold_candidate_accuracy"),
        "gold_live_accuracy": last.get("gold_live_accuracy"),
    }


async def adapters(db: ClickHouseStore, workflow: str = "", limit: int = 100) -> list[dict[str, Any]]:
    """The latest version of every adapter, most recently updated first."""
    rows = await db.query(_sql(db, _ADAPTERS_SQL), {"workflow": workflow, "limit": limit})
    return [{**r, "updated_at": iso(r["updated_at"]), "metrics": dict(r["metrics"])} for r in rows]


async def rollouts(
    db: ClickHouseStore, window_s: float, workflow: str = "", limit: int = 20
) -> list[RolloutHistory]:
    """The ``limit`` rollouts that moved in the last ``window_s`` seconds, with their pass rates."""
    now = dt.datetime.now(dt.UTC)
    params = {"since": now - dt.timedelta(seconds=window_s), "workflow": workflow, "limit": limit}
    histories = shape_rollouts(await db.query(_sql(db, _TRANSITIONS_SQL), params), now)
    for history in histories:
        rows = await db.query(
            _sql(db, _PASS_RATE_SQL),
            {
                "tenant": history.tenant,
                "workflow": history.workflow,
                "adapter": history.adapter_id,
                "bucket": history.bucket_s,
                "since": dt.datetime.fromisoformat(history.started_at),
                "until": dt.datetime.fromisoformat(history.until),
            },
        )
        history.pass_rate = pass_rate_points(rows)
        history.verdicts = verdict_totals(history.pass_rate)
    return histories


def _sql(db: ClickHouseStore, template: str) -> str:
    return template.replace("{db}", f"`{db.database}`")
