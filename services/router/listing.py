"""``GET /api/v1/rollouts`` on the router's health port: the live rollouts `cumulus rollout list` reads."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cumulus.service import RouteSetup, ServiceApi, ServiceContext
from services.router.core import Router


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
                "route_version": table.version if table is not None else 0,
                "reason": last.reason if last else "",
                "evidence": dict(last.evidence) if last else {},
            }
        )
    return rows


def mount(api: ServiceApi[Router]) -> RouteSetup:
    """The route setup for ``run_service``: the rollouts, once the router restored them."""

    async def rollouts(_: web.Request, router: Router) -> dict[str, Any]:
        return {"rollouts": describe(router)}

    def setup(_: ServiceContext, app: web.Application) -> None:
        app.router.add_get("/api/v1/rollouts", api.route(rollouts))

    return setup
