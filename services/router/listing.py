"""``GET /api/v1/rollouts`` on the router's health port: the live rollouts `cumulus rollout list` reads."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cumulus.service import RouteSetup, ServiceApi, ServiceContext
from services.router.core import Router
from services.router.paired import GoldCounts


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
                "reason": rollout.held or (last.reason if last else ""),
                "evidence": dict(last.evidence) if last else {},
            }
        )
    return rows


def _gold(router: Router, step: GoldCounts, last: dict[str, float]) -> dict[str, float]:
    """Candidate and live gold accuracy with intervals: this step's, else the last decision's."""
    if step.n:
        return router.policy.gold_test.evidence(step)
    return {k: v for k, v in last.items() if k.startswith(("gold_", "candidate_gold", "live_gold", "delta_"))}


def mount(api: ServiceApi[Router]) -> RouteSetup:
    """The route setup for ``run_service``: the rollouts, once the router restored them."""

    async def rollouts(_: web.Request, router: Router) -> dict[str, Any]:
        return {"rollouts": describe(router)}

    def setup(_: ServiceContext, app: web.Application) -> None:
        app.router.add_get("/api/v1/rollouts", api.route(rollouts))

    return setup
