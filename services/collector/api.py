"""The collector's read API, served on its health port (cumulus.service: ``routes``, ``ServiceApi``).

The CLI and the dashboard read ClickHouse only through this API: with chDB the collector's
process owns the data directory, so nothing else may open it.

- ``GET  /api/v1/workflows?window_h=24&tenant=``                 insight per workflow
- ``GET  /api/v1/workflows/{workflow}/series?tenant=&window_h=&step_s=``  dashboard time series
- ``POST /api/v1/workflows/{workflow}/nominate``  body ``{"tenant": "", "reason": ""}``
- ``GET  /api/v1/candidates``  every nomination, newest first, with its outcome; the
  learning curves (learning.py); workflows waiting for more data (too small, or not grown enough);
  for the label-shaped ones among them, labelled examples per label and how many more would help
  (sufficiency.py)
- ``GET  /api/v1/detection``                                     the last periodic check
- ``GET  /api/v1/capture?workflow=``             row/event counts per table, rows inserted, capture lag
- ``GET  /api/v1/adapters?workflow=&limit=100``                  latest version of each adapter, newest first
- ``GET  /api/v1/rollouts?workflow=&window_h=&limit=20``  transitions, traffic share and judge pass rate
- ``GET  /api/v1/drift?workflow=&limit=50``  the last drift check of each promoted workflow, signals announced
- ``POST /api/v1/erasures``  body ``{"tenant", "requests": [], "sessions": [], "users": [], "all": false}``:
  erase (services/collector/erasure.py) and answer the receipt
- ``GET  /api/v1/erasures?tenant=``  the receipts kept, newest first
- ``GET  /dashboard`` (and ``/``)                                the dashboard page (static/dashboard.html)

Errors answer ``{"error": ..., "fix": ...}`` with the error's HTTP status; 503 while starting.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from cumulus.errors import InvalidArgument, NotFound
from cumulus.logs import get_logger
from cumulus.service import ServiceApi, ServiceContext
from services.collector import drift_sql, learning, rollout_views, sufficiency
from services.collector.detection import CandidateDetector, evidence_of
from services.collector.drift import DriftWatch
from services.collector.erasure import Eraser, Selector
from services.collector.insights import Insights
from services.collector.nomination import Nominator
from services.collector.rows import CAPTURES
from services.collector.store import ClickHouseStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger("collector")
_CANDIDATES_SQL = """
SELECT candidate_id, tenant, workflow, occurred_at, nominated_by, reason, evidence, dataset_id,
       dataset_uri, train_examples, holdout_examples, base_model, parent_adapter_id
FROM {db}.candidates FINAL ORDER BY occurred_at DESC
"""

# Rows ever inserted into `requests`, from the view it feeds on every insert: merges collapse
# duplicates in `requests` itself (so its count() can hide a batch inserted twice), never here.
_INSERTED_SQL = """
SELECT sum(requests) AS n FROM {db}.workflow_stats_minute
WHERE {workflow:String} = '' OR workflow = {workflow:String}
"""
# Capture lag: the gateway handed the event to Kafka (published_at) -> its insert ran (ingested_at).
_FRESHNESS_SQL = """
SELECT quantileExact(0.5)(lag) AS p50, quantileExact(0.99)(lag) AS p99, max(lag) AS max
FROM (SELECT dateDiff('millisecond', published_at, ingested_at) AS lag FROM {db}.requests
      WHERE {workflow:String} = '' OR workflow = {workflow:String})
"""


@dataclass
class Backend:
    """What the handlers need; attached by the collector's main once ClickHouse is open."""

    db: ClickHouseStore
    insights: Insights
    nominator: Nominator
    detector: CandidateDetector
    drift: DriftWatch
    default_window_h: float
    eraser: Eraser | None = None


def _number(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidArgument(name, f"{raw!r} is not a number") from exc
    if value <= 0:
        raise InvalidArgument(name, "must be positive")
    return value


def _eraser(b: Backend) -> Eraser:
    if b.eraser is None:
        raise NotFound("this collector does not erase", fix="run the collector's main")
    return b.eraser


class ReadApi:
    """Mounts the routes; the API ones answer 503 until ``api`` has the backend attached."""

    def __init__(self) -> None:
        self.api = ServiceApi[Backend]("collector")
        self.page = (resources.files("services.collector") / "static" / "dashboard.html").read_bytes()

    def mount(self, _: ServiceContext, app: web.Application) -> None:
        add, route = app.router, self.api.route
        add.add_get("/api/v1/workflows", route(self.workflows))
        add.add_get("/api/v1/workflows/{workflow}/series", route(self.series))
        add.add_post("/api/v1/workflows/{workflow}/nominate", route(self.nominate))
        add.add_get("/api/v1/candidates", route(self.candidates))
        add.add_get("/api/v1/detection", route(self.detection))
        add.add_get("/api/v1/capture", route(self.capture))
        add.add_get("/api/v1/adapters", route(self.adapters))
        add.add_get("/api/v1/rollouts", route(self.rollouts))
        add.add_get("/api/v1/drift", route(self.drift))
        add.add_post("/api/v1/erasures", route(self.erase))
        add.add_get("/api/v1/erasures", route(self.erasures))
        # Served while the backend is still starting; the page shows the API's 503.
        add.add_get("/dashboard", self.dashboard)
        add.add_get("/", self.home)

    async def dashboard(self, _: web.Request) -> web.Response:
        return web.Response(body=self.page, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def home(self, _: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard")

    async def workflows(self, request: web.Request, b: Backend) -> Any:
        window_h = _number(request, "window_h", b.default_window_h)
        stats = await b.insights.workflows(window_h * 3600, tenant=request.query.get("tenant", ""))
        return {"window_h": window_h, "workflows": [s.to_json() for s in stats]}

    async def series(self, request: web.Request, b: Backend) -> Any:
        workflow = request.match_info["workflow"]
        window_h = _number(request, "window_h", b.default_window_h)
        tenant = await self._tenant_of(b, workflow, request.query.get("tenant", ""), window_h)
        step_s = int(_number(request, "step_s", 300))
        points = await b.insights.series(tenant, workflow, window_h * 3600, step_s)
        return {"tenant": tenant, "workflow": workflow, "step_s": max(60, step_s), "points": points}

    async def nominate(self, request: web.Request, b: Backend) -> Any:
        workflow = request.match_info["workflow"]
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError as exc:
            raise InvalidArgument("body", f"not JSON: {exc}") from exc
        tenant = await self._tenant_of(b, workflow, str(body.get("tenant", "")), b.default_window_h)
        stats = await b.insights.workflows(b.default_window_h * 3600, tenant=tenant, workflow=workflow)
        evidence = evidence_of(stats[0]) if stats else {}
        totals = await learning.total_live_answers(b.db, tenant)
        evidence["total_live_requests"] = float(totals.get((tenant, workflow), 0))
        reason = str(body.get("reason") or "nominated by an operator")
        event = await b.nominator.nominate(tenant, workflow, "manual", reason, evidence)
        return _candidate_json(event)

    async def erase(self, request: web.Request, b: Backend) -> Any:
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            raise InvalidArgument("body", f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise InvalidArgument("body", "must be a JSON object")
        return await _eraser(b).erase(Selector.from_json(body))

    async def erasures(self, request: web.Request, b: Backend) -> Any:
        return {"receipts": _eraser(b).receipts(request.query.get("tenant", ""))}

    async def candidates(self, _: web.Request, b: Backend) -> Any:
        rows = await b.db.query(_CANDIDATES_SQL.replace("{db}", f"`{b.db.database}`"))
        history = await learning.attempts(b.db)
        outcome = {a.candidate_id: a for a in history}
        for row in rows:
            attempt = outcome.get(row["candidate_id"])
            row["outcome"] = attempt.outcome if attempt else "pending"
            row["adapter_id"] = attempt.adapter_id if attempt else ""
        waiting = [
            {"tenant": a.tenant, "workflow": a.workflow, "failed": a.failed, "reason": a.reason}
            for a in b.detector.last_assessments
            if not a.qualifies and {"volume", "growth"} & set(a.failed)
        ]
        listed = [(r["tenant"], r["workflow"]) for r in rows] + [
            (w["tenant"], w["workflow"]) for w in waiting
        ]
        estimates = await sufficiency.estimates(b.db, listed, b.detector.cfg)
        return {
            "candidates": rows,
            "learning_curves": learning.learning_curves(history),
            "waiting": waiting,
            "sufficiency": [s.to_json() for s in estimates],
        }

    async def detection(self, _: web.Request, b: Backend) -> Any:
        return {
            "checked_at": b.detector.last_checked,
            "assessments": [a.to_json() for a in b.detector.last_assessments],
        }

    async def capture(self, request: web.Request, b: Backend) -> Any:
        workflow = request.query.get("workflow", "")
        tables: dict[str, Any] = {}
        for capture in CAPTURES.values():
            name = f"`{b.db.database}`.`{capture.table.name}`"
            where = "WHERE {workflow:String} = '' OR workflow = {workflow:String}"
            raw = await b.db.query(
                f"SELECT count() AS rows, uniqExact(event_id) AS events FROM {name} {where}",
                {"workflow": workflow},
            )
            final = await b.db.query(f"SELECT count() AS n FROM {name} FINAL {where}", {"workflow": workflow})
            tables[capture.table.name] = {**raw[0], "final": final[0]["n"]}
        # Read after the counts: `inserted` may run ahead of them while inserts land, never behind.
        inserted = await b.db.query(
            _INSERTED_SQL.replace("{db}", f"`{b.db.database}`"), {"workflow": workflow}
        )
        tables["requests"]["inserted"] = int(inserted[0]["n"])
        lag = await b.db.query(_FRESHNESS_SQL.replace("{db}", f"`{b.db.database}`"), {"workflow": workflow})
        # An empty table yields NaN quantiles, which are not JSON.
        tables["requests"]["freshness_ms"] = {k: None if v != v else float(v) for k, v in lag[0].items()}
        return {"workflow": workflow, "tables": tables}

    async def adapters(self, request: web.Request, b: Backend) -> Any:
        limit = int(_number(request, "limit", 100))
        return {"adapters": await rollout_views.adapters(b.db, request.query.get("workflow", ""), limit)}

    async def rollouts(self, request: web.Request, b: Backend) -> Any:
        window_h = _number(request, "window_h", b.default_window_h)
        limit = int(_number(request, "limit", 20))
        found = await rollout_views.rollouts(b.db, window_h * 3600, request.query.get("workflow", ""), limit)
        return {"window_h": window_h, "rollouts": [r.to_json() for r in found]}

    async def drift(self, request: web.Request, b: Backend) -> Any:
        """The last drift check of every promoted workflow, and the signals announced so far."""
        workflow = request.query.get("workflow", "")
        limit = int(_number(request, "limit", 50))
        return {
            "checked_at": b.drift.last_checked,
            "watched": [c.to_json() for c in b.drift.last if not workflow or c.workflow == workflow],
            "signals": await drift_sql.history(b.db, workflow, limit),
        }

    @staticmethod
    async def _tenant_of(b: Backend, workflow: str, tenant: str, window_h: float) -> str:
        if tenant:
            return tenant
        tenants = sorted({s.tenant for s in await b.insights.workflows(window_h * 3600, workflow=workflow)})
        if not tenants:
            raise NotFound(f"no traffic for workflow {workflow!r} in the last {window_h:g} h")
        if len(tenants) > 1:
            raise InvalidArgument("tenant", f"workflow {workflow!r} exists for tenants {tenants}; name one")
        return tenants[0]


def _candidate_json(event: Any) -> dict[str, Any]:
    return {
        "candidate_id": event.candidate_id,
        "tenant": event.meta.tenant,
        "workflow": event.meta.workflow,
        "nominated_by": event.nominated_by,
        "reason": event.reason,
        "evidence": dict(event.evidence),
        "dataset_id": event.dataset_id,
        "dataset_uri": event.dataset_uri,
        "train_examples": event.train_examples,
        "holdout_examples": event.holdout_examples,
        "base_model": event.base_model,
        "parent_adapter_id": event.parent_adapter_id,
    }
