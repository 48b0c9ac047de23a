"""The reads the drift watch makes: promoted workflows, their window of traffic, feedback, and the
signals already announced (services/collector/drift.py)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from cumulus.config import ExportConfig
from cumulus.config.drift import SEVERITIES
from cumulus.rollout_states import ACTIVE, PAUSED, PROMOTED
from services.collector.drift_measures import WrongShare
from services.collector.export import FeedbackNote, is_wrong
from services.collector.insights import LIVE_ROUTES
from services.collector.learning import ADAPTER_STATES_SQL
from services.collector.rows import aware

if TYPE_CHECKING:
    from services.collector.drift import Promoted
    from services.collector.store import ClickHouseStore

# A workflow is watched through the adapter promoted most recently among those still promoted
# (a version superseded by a newer one has no event of its own, so the newer promotion wins; one
# reinstated by `rollback --to` is promoted anew), or paused straight from promoted (a drift
# warning stepped it back: it still serves, and worse drift must still roll it back), unless
# another rollout is running on the workflow: that rollout's own gate is in charge until it ends.
_STEPPED_BACK = f"state = '{PAUSED}' AND came_from = '{PROMOTED}'"
_PROMOTED_SQL = f"""
SELECT p.tenant AS tenant, p.workflow AS workflow, p.adapter_id AS adapter_id,
       a.dataset_id AS dataset_id, p.promoted_at AS since
FROM (SELECT tenant, workflow, argMax(adapter_id, since) AS adapter_id, max(since) AS promoted_at
      FROM ({ADAPTER_STATES_SQL}) WHERE state = '{PROMOTED}' OR {_STEPPED_BACK}
      GROUP BY tenant, workflow) AS p
JOIN (SELECT tenant, adapter_id, dataset_id FROM {{db}}.adapters FINAL) AS a
    ON a.tenant = p.tenant AND a.adapter_id = p.adapter_id
WHERE a.dataset_id != '' AND (p.tenant, p.workflow) NOT IN (
    SELECT tenant, workflow FROM ({ADAPTER_STATES_SQL}) WHERE state IN {ACTIVE} AND NOT ({_STEPPED_BACK}))
"""

_WINDOW_SQL = """
SELECT messages, tools, response, status = 'ok' AND adapter_id = {adapter:String} AS by_adapter
FROM {db}.requests FINAL
WHERE tenant = {tenant:String} AND workflow = {workflow:String} AND occurred_at >= {since:DateTime64(3)}
ORDER BY occurred_at DESC LIMIT {limit:UInt32}
"""

# Feedback on a set of a workflow's answers, with the answer it judged (a correction that says
# what the answer said is a confirmation).
_FEEDBACK_SQL = f"""
SELECT f.score AS score, f.label AS label, f.correction AS correction, r.response AS response
FROM (SELECT request_id, argMax(score, occurred_at) AS score, argMax(label, occurred_at) AS label,
             argMax(correction, occurred_at) AS correction
      FROM {{db}}.feedback FINAL WHERE tenant = {{tenant:String}} GROUP BY request_id) AS f
JOIN (SELECT request_id, response, occurred_at FROM {{db}}.requests FINAL
      WHERE tenant = {{tenant:String}} AND workflow = {{workflow:String}} AND status = 'ok'
        AND ({{adapter:String}} != '' AND adapter_id = {{adapter:String}}
                AND occurred_at >= {{since:DateTime64(3)}}
             OR {{adapter:String}} = '' AND route_mode IN {LIVE_ROUTES}
                AND occurred_at < {{since:DateTime64(3)}})) AS r
    ON r.request_id = f.request_id
ORDER BY r.occurred_at DESC LIMIT {{limit:UInt32}}
"""

_ANNOUNCED_SQL = f"""
SELECT tenant, adapter_id, signal, max(indexOf({list(SEVERITIES)}, severity)) AS rank
FROM {{db}}.drift_signals FINAL GROUP BY tenant, adapter_id, signal
"""


_HISTORY_SQL = """
SELECT tenant, workflow, adapter_id, dataset_id, occurred_at, signal, severity, detail, evidence
FROM {db}.drift_signals FINAL
WHERE ({workflow:String} = '' OR workflow = {workflow:String})
ORDER BY occurred_at DESC LIMIT {limit:UInt32}
"""


def _sql(db: ClickHouseStore, template: str) -> str:
    return template.replace("{db}", f"`{db.database}`")


async def promoted(db: ClickHouseStore) -> list[dict[str, Any]]:
    """Each promoted workflow: tenant, workflow, adapter_id, dataset_id, since."""
    rows = await db.query(_sql(db, _PROMOTED_SQL), {})
    return [{**r, "since": aware(r["since"])} for r in rows]


async def window(
    db: ClickHouseStore, tenant: str, workflow: str, since: dt.datetime, limit: int, adapter: str = ""
) -> list[dict[str, Any]]:
    """The newest ``limit`` requests since ``since``; ``by_adapter``: answered (ok) by ``adapter``."""
    params = {"tenant": tenant, "workflow": workflow, "since": since, "limit": limit, "adapter": adapter}
    return await db.query(_sql(db, _WINDOW_SQL), params)


async def feedback(
    db: ClickHouseStore, p: Promoted, since: dt.datetime, cfg: ExportConfig, limit: int = 2000
) -> tuple[WrongShare, WrongShare]:
    """Wrong answers by feedback: the adapter's since ``since``, live's before the promotion."""
    shares = []
    for adapter, start in ((p.adapter_id, since), ("", p.since)):
        params = {
            "tenant": p.tenant,
            "workflow": p.workflow,
            "adapter": adapter,
            "since": start,
            "limit": limit,
        }
        rows = await db.query(_sql(db, _FEEDBACK_SQL), params)
        wrong = sum(is_wrong(_note(r), str(r["response"]), cfg) for r in rows)
        shares.append(WrongShare(len(rows), wrong))
    return shares[0], shares[1]


def _note(row: dict[str, Any]) -> FeedbackNote:
    return FeedbackNote(row["score"], str(row["label"] or ""), str(row["correction"] or ""))


async def announced(db: ClickHouseStore) -> dict[tuple[str, str, str], int]:
    """(tenant, adapter, signal) -> the highest severity stored (1 notice .. 3 critical)."""
    rows = await db.query(_sql(db, _ANNOUNCED_SQL), {})
    return {(r["tenant"], r["adapter_id"], r["signal"]): int(r["rank"]) for r in rows}


async def history(db: ClickHouseStore, workflow: str, limit: int) -> list[dict[str, Any]]:
    """The signals announced (all workflows, or ``workflow``'s), newest first."""
    rows = await db.query(_sql(db, _HISTORY_SQL), {"workflow": workflow, "limit": limit})
    return [{**r, "occurred_at": aware(r["occurred_at"]).isoformat(timespec="milliseconds")} for r in rows]
