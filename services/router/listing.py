"""The router's reads on its health port (operator tokens only):

- ``GET /api/v1/rollouts``: the live rollouts `cumulus rollout list` reads;
- ``GET /api/v1/workflows/{workflow}/versions?tenant=T``: the workflow's versions and its rollout
  (`cumulus adapters history`, and the checks of `cumulus rollout rollback --to`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cumulus.errors import InvalidArgument
from cumulus.rollout_states import PROMOTED
from cumulus.service import RouteSetup, ServiceApi, ServiceContext
from services.router.core import Router
from services.router.paired import GoldCounts
from services.router.rollout import WorkflowKey


def describe(router: Router) -> list[dict[str, Any]]:
    """Each tenant's workflows' latest rollouts: state, weight, the step's count, the last decision."""
    rows = []
    for rollout in sorted(router.rollouts.values(), key=lambda r: (r.workflow, r.tenant)):
        last = rollout.last
        table = router.tables.get(rollout.key)
        rows.append(
            {
                "workflow": rollout.workflow,
                "tenant": rollout.tenant,
                "adapter_id": rollout.adapter_id,
                "state": rollout.state,
                "step": rollout.step,
                "weight": rollout.weight,
                "step_verdicts": rollout.evidence.n,
                "step_passes": rollout.evidence.passes,
                "step_gold": rollout.evidence.gold.n,
                "gold": _gold(router, rollout.evidence.gold, dict(last.evidence) if last else {}),
                "route_version": table.version if table is not None else 0,
                "held": bool(rollout.held),
                "audits_passed": rollout.audits,
                "last_audit": (
                    {"reason": rollout.last_audit.reason, "evidence": dict(rollout.last_audit.evidence)}
                    if rollout.last_audit
                    else None
                ),
                # What the table in force audits (a drift notice may have raised it).
                "audit_share": table.anchor_rate if table is not None and rollout.state == PROMOTED else 0.0,
                "drift": [{"signal": name, **acted} for name, acted in sorted(rollout.drift.items())],
                "reason": rollout.held or (last.reason if last else ""),
                "evidence": dict(last.evidence) if last else {},
            }
        )
    return rows


def versions_of(router: Router, tenant: str, workflow: str) -> dict[str, Any]:
    """``tenant``'s ``workflow``: every version in order, and the rollout that holds it now."""
    if not tenant:
        tenants = sorted({key.tenant for key in router.versions.workflows() if key.workflow == workflow})
        if len(tenants) != 1:
            raise InvalidArgument(
                "tenant",
                f"workflow {workflow!r} has versions under tenants {tenants}" if tenants else "required",
                fix="name it: ?tenant=T (the CLI: --tenant T)",
            )
        tenant = tenants[0]
    key = WorkflowKey(tenant, workflow)
    rollout = next((row for row in describe(router) if (row["tenant"], row["workflow"]) == key), None)
    return {
        "tenant": tenant,
        "workflow": workflow,
        "versions": [version.row() for version in router.versions.history(key)],
        "rollout": rollout,
    }


def _gold(router: Router, step: GoldCounts, last: dict[str, float]) -> dict[str, float]:
    """Candidate and live gold accuracy with intervals: this step's, else the last decision's."""
    if step.n:
        return router.policy.gold_test.evidence(step)
    return {k: v for k, v in last.items() if k.startswith(("gold_", "candidate_gold", "live_gold", "delta_"))}


def mount(api: ServiceApi[Router]) -> RouteSetup:
    """The route setup for ``run_service``: the rollouts, once the router restored them."""

    async def rollouts(_: web.Request, router: Router) -> dict[str, Any]:
        return {"rollouts": describe(router)}

    async def versions(request: web.Request, router: Router) -> dict[str, Any]:
        return versions_of(router, request.query.get("tenant", ""), request.match_info["workflow"])

    def setup(_: ServiceContext, app: web.Application) -> None:
        app.router.add_get("/api/v1/rollouts", api.route(rollouts))
        app.router.add_get("/api/v1/workflows/{workflow}/versions", api.route(versions))

    return setup
