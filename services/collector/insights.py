"""Workflow insight: what each workflow costs, how it behaves, and what shape its answers have.

Exact numbers come from ``requests FINAL`` over a time window (every event once, whatever
duplicates a producer sent); the dashboard's time series come from the per-minute aggregate
``workflow_stats_minute``, which is cheap to scan but counts a producer's duplicate twice.

Output shape, per successful answer: ``tool_call`` (a JSON object or list of objects with ``name``
and ``arguments``, or a ``<tool_call>`` block as Qwen2.5 writes them), ``json`` (other JSON objects
or arrays) or ``text``; a markdown code fence around the answer is looked through. Template
stability is the share of requests carrying the workflow's most common prompt-template fingerprint.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from cumulus.config import ModelPrice
from services.collector.store import ClickHouseStore

LIVE_MODEL = "live"
SMALL_MODEL = "small"
LIVE_ROUTES = ("live", "fallback")
"""Route modes where the live model produced the answer (the traffic a small model could take)."""
_DAY_S = 86400.0

# Models often fence their answer in markdown (```json ... ```): the shape is that of what is inside.
_BODY = "replaceRegexpAll(trimBoth(response), '^```[A-Za-z]*\\\\s*|\\\\s*```$', '')"
_SHAPE = """multiIf(
    (isValidJSON(body) AND (
        (JSONHas(body, 'name') AND JSONHas(body, 'arguments'))
        OR (JSONHas(body, 1, 'name') AND JSONHas(body, 1, 'arguments'))))
    OR position(response, '<tool_call>') > 0, 'tool_call',
    isValidJSON(body) AND match(body, '^\\\\s*[\\\\[{]'), 'json',
    'text')"""

_FILTER = """occurred_at >= {since:DateTime64(3)}
      AND ({tenant:String} = '' OR tenant = {tenant:String})
      AND ({workflow:String} = '' OR workflow = {workflow:String})"""

_TOTALS_SQL = f"""
SELECT tenant, workflow,
    count() AS requests,
    countIf(status != 'ok') AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    quantiles(0.5, 0.95)(latency_ms) AS latency_q,
    countIf(status = 'ok') AS ok,
    countIf(status = 'ok' AND route_mode IN {LIVE_ROUTES}) AS live_ok,
    countIf(status = 'ok' AND shape = 'tool_call') AS tool_calls,
    countIf(status = 'ok' AND shape = 'json') AS json_outputs,
    uniqExactIf(response, status = 'ok') AS distinct_outputs,
    min(occurred_at) AS first_seen,
    max(occurred_at) AS last_seen
FROM (
    SELECT tenant, workflow, status, route_mode, prompt_tokens, completion_tokens, latency_ms,
           response, occurred_at, {_BODY} AS body, {_SHAPE} AS shape
    FROM {{db}}.requests FINAL
    WHERE {_FILTER}
)
GROUP BY tenant, workflow
"""

_TEMPLATES_SQL = f"""
SELECT tenant, workflow, max(n) / sum(n) AS stability
FROM (SELECT tenant, workflow, fingerprint, count() AS n FROM {{db}}.requests FINAL WHERE {_FILTER}
      GROUP BY tenant, workflow, fingerprint)
GROUP BY tenant, workflow
"""

_TOKENS_SQL = f"""
SELECT tenant, workflow, model, route_mode IN {LIVE_ROUTES} AS live_route,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens
FROM {{db}}.requests FINAL WHERE {_FILTER}
GROUP BY tenant, workflow, model, live_route
"""

_SERIES_SQL = """
SELECT toStartOfInterval(minute, toIntervalSecond({step:UInt32})) AS t,
       sum(requests) AS requests, sum(errors) AS errors,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       quantilesMerge(0.5, 0.95, 0.99)(latency_ms) AS latency_q
FROM {db}.workflow_stats_minute
WHERE tenant = {tenant:String} AND workflow = {workflow:String} AND minute >= {since:DateTime64(3)}
GROUP BY t ORDER BY t
"""


@dataclass
class WorkflowStats:
    """One workflow over one window; what `cumulus workflows --json` prints."""

    tenant: str
    workflow: str
    requests: int
    errors: int
    error_rate: float
    prompt_tokens: int
    completion_tokens: int
    p50_ms: float
    p95_ms: float
    est_cost: float
    est_daily_savings: float
    live_ok: int
    json_share: float
    tool_call_share: float
    output_consistency: float
    distinct_outputs: int
    template_stability: float
    first_seen: str
    last_seen: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _cost(prices: dict[str, ModelPrice], model: str, prompt: int, completion: int) -> float:
    price = prices.get(model)
    if price is None:
        return 0.0
    return (prompt * price.prompt_per_1k + completion * price.completion_per_1k) / 1000.0


def _iso(value: dt.datetime) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat(timespec="milliseconds")


class Insights:
    """Read-side queries over the captured traffic."""

    def __init__(self, store: ClickHouseStore, prices: dict[str, ModelPrice]) -> None:
        self.store = store
        self.prices = prices

    def _sql(self, template: str) -> str:
        return template.replace("{db}", f"`{self.store.database}`")

    async def workflows(self, window_s: float, tenant: str = "", workflow: str = "") -> list[WorkflowStats]:
        """Every workflow seen in the last ``window_s`` seconds, busiest first."""
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window_s)
        params = {"since": since, "tenant": tenant, "workflow": workflow}
        totals = await self.store.query(self._sql(_TOTALS_SQL), params)
        templates = {
            (r["tenant"], r["workflow"]): float(r["stability"])
            for r in await self.store.query(self._sql(_TEMPLATES_SQL), params)
        }
        cost: dict[tuple[str, str], float] = defaultdict(float)
        savings: dict[tuple[str, str], float] = defaultdict(float)
        for r in await self.store.query(self._sql(_TOKENS_SQL), params):
            key, prompt, completion = (r["tenant"], r["workflow"]), r["prompt_tokens"], r["completion_tokens"]
            cost[key] += _cost(self.prices, r["model"], prompt, completion)
            if r["live_route"] and r["model"] == LIVE_MODEL:
                savings[key] += _cost(self.prices, LIVE_MODEL, prompt, completion) - _cost(
                    self.prices, SMALL_MODEL, prompt, completion
                )
        out = [self._stats(r, templates, cost, savings, window_s) for r in totals]
        return sorted(out, key=lambda s: (-s.requests, s.tenant, s.workflow))

    @staticmethod
    def _stats(
        r: dict[str, Any],
        templates: dict[tuple[str, str], float],
        cost: dict[tuple[str, str], float],
        savings: dict[tuple[str, str], float],
        window_s: float,
    ) -> WorkflowStats:
        key = (r["tenant"], r["workflow"])
        requests, ok = int(r["requests"]), int(r["ok"])
        tool, json_ = int(r["tool_calls"]), int(r["json_outputs"])
        share = (lambda n: n / ok) if ok else (lambda n: 0.0)
        p50, p95 = (float(q) for q in r["latency_q"])
        return WorkflowStats(
            tenant=key[0],
            workflow=key[1],
            requests=requests,
            errors=int(r["errors"]),
            error_rate=int(r["errors"]) / requests if requests else 0.0,
            prompt_tokens=int(r["prompt_tokens"]),
            completion_tokens=int(r["completion_tokens"]),
            p50_ms=round(p50, 3),
            p95_ms=round(p95, 3),
            est_cost=round(cost[key], 6),
            # The window's savings at the window's average rate, per day.
            est_daily_savings=round(savings[key] * _DAY_S / window_s, 6),
            live_ok=int(r["live_ok"]),
            json_share=share(json_),
            tool_call_share=share(tool),
            output_consistency=share(max(tool, json_, ok - tool - json_)),
            distinct_outputs=int(r["distinct_outputs"]),
            template_stability=templates.get(key, 0.0),
            first_seen=_iso(r["first_seen"]),
            last_seen=_iso(r["last_seen"]),
        )

    async def series(self, tenant: str, workflow: str, window_s: float, step_s: int) -> list[dict[str, Any]]:
        """Per-``step_s`` buckets of one workflow for the dashboard (from the per-minute aggregate)."""
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window_s)
        params = {"since": since, "tenant": tenant, "workflow": workflow, "step": max(60, int(step_s))}
        rows = await self.store.query(self._sql(_SERIES_SQL), params)
        return [
            {
                "t": _iso(r["t"]),
                "requests": int(r["requests"]),
                "errors": int(r["errors"]),
                "prompt_tokens": int(r["prompt_tokens"]),
                "completion_tokens": int(r["completion_tokens"]),
                "p50_ms": round(float(r["latency_q"][0]), 3),
                "p95_ms": round(float(r["latency_q"][1]), 3),
                "p99_ms": round(float(r["latency_q"][2]), 3),
            }
            for r in rows
        ]
