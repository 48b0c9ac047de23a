"""Prometheus metrics of the gateway, served by the service runtime's /metrics on the health port.

The event publisher adds its own: ``cumulus_events_*`` and ``cumulus_spool_depth`` (label service=gateway).

Defined once per process (prometheus_client's default registry refuses duplicates), so tests
that build several gateways in one process share them.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from cumulus.v1 import common_pb2
from services.gateway.calls import Call, Outcome

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "cumulus_gateway_requests_total",
    "Finished requests by API, workflow, route mode and gRPC status.",
    ["api", "workflow", "mode", "code"],
)
LATENCY = Histogram(
    "cumulus_gateway_request_latency_seconds",
    "Time from admission to the last byte of the answer, by workflow and route mode.",
    ["workflow", "mode"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "cumulus_gateway_time_to_first_token_seconds",
    "Time from admission to the first text, by workflow and route mode.",
    ["workflow", "mode"],
    buckets=_LATENCY_BUCKETS,
)
CANDIDATE_ERRORS = Counter(
    "cumulus_gateway_candidate_errors_total",
    "Canary requests whose candidate failed and the live model answered instead.",
    ["workflow", "adapter"],
)
SHADOW = Counter(
    "cumulus_gateway_shadow_total",
    "Shadow copies by outcome: ok, error, timeout (copies to a candidate; anchor_ok, anchor_error, "
    "anchor_timeout: copies to the live model), skipped (slots busy), lost (crashed).",
    ["outcome"],
)
SHADOW_IN_FLIGHT = Gauge("cumulus_gateway_shadow_in_flight", "Shadow copies running now.")
ROUTE_TABLES = Gauge("cumulus_gateway_route_tables", "Workflows with a route table in force.")
STALE_ROUTES = Gauge(
    "cumulus_gateway_stale_routes",
    "Rollouts whose route table the router has not re-published within gateway.route_max_age_s.",
)


class LabelBudget:
    """A client-chosen label value (a workflow name) kept by name for the first ``limit`` distinct
    values; every later one is counted as ``other``, so no client can grow the series without bound."""

    OTHER = "other"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._named: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._named:
            return value
        if len(self._named) >= self.limit:
            return self.OTHER
        self._named.add(value)
        return value


WORKFLOW_LABELS = LabelBudget(200)
"""~5 series per workflow across the metrics above: at most ~1,000 series from this label."""

_MODE_NAMES = {
    value: name.removeprefix("ROUTE_MODE_").lower() for name, value in common_pb2.RouteMode.items()
}


def mode_name(route: common_pb2.Route) -> str:
    """live, canary, shadow, fallback or promoted."""
    return _MODE_NAMES.get(route.mode, "unspecified")


def observe(call: Call, outcome: Outcome) -> None:
    """Count one finished request and its latencies."""
    mode = mode_name(outcome.route)
    workflow = WORKFLOW_LABELS(call.workflow.name)
    REQUESTS.labels(call.api, workflow, mode, outcome.error_code or "OK").inc()
    LATENCY.labels(workflow, mode).observe(outcome.latency_ms / 1000.0)
    if outcome.ttft_ms:
        TTFT.labels(workflow, mode).observe(outcome.ttft_ms / 1000.0)
    if outcome.candidate_error:
        CANDIDATE_ERRORS.labels(workflow, call.plan.primary.target.adapter_id).inc()


def watch_route_tables(count: Callable[[], float], stale: Callable[[], float]) -> None:
    """Read the number of route tables, and of stale ones, whenever /metrics is scraped.

    The spool depth is the publisher's own gauge, ``cumulus_spool_depth{service="gateway"}``.
    """
    ROUTE_TABLES.set_function(count)
    STALE_ROUTES.set_function(stale)
