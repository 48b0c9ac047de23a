"""`python -m services.router`: rollouts of adapters with sequential-test gates (see services/router/).

Wiring only: restore the rollouts from Kafka (services/router/state.py), republish any route table
that lags its rollout, then run the consume loop (services/router/worker.py). The health port also
serves ``GET /api/v1/rollouts``, which `cumulus rollout list` reads.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cumulus.consuming import start_consumer
from cumulus.service import ServiceContext, kafka_check, run_service
from services.router.core import Router
from services.router.state import load_state
from services.router.worker import INPUTS, RouterWorker


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


def serve() -> None:
    holder: list[Router] = []

    def routes(ctx: ServiceContext, app: web.Application) -> None:
        async def rollouts(_: web.Request) -> web.Response:
            if not holder:
                return web.json_response({"error": "router is starting"}, status=503)
            return web.json_response({"rollouts": describe(holder[0])})

        app.router.add_get("/api/v1/rollouts", rollouts)

    async def main(ctx: ServiceContext) -> None:
        config = ctx.config
        bootstrap = config.kafka.bootstrap_servers
        ctx.readiness["kafka"] = kafka_check(bootstrap)

        async def restored() -> str | None:
            return None if holder else "reading rollouts and route tables back from Kafka"

        ctx.readiness["restored"] = restored
        publisher = ctx.event_publisher(config.router.spool_dir)
        await publisher.start()
        consumer = None
        try:
            state = await load_state(bootstrap, ctx.stopping)
            if state is None:
                return
            router = Router(config.router)
            for output in router.restore(*state):
                publisher.publish(output.topic, output.event)
            holder.append(router)
            consumer = await start_consumer(
                *(spec.name for spec in INPUTS),
                bootstrap_servers=bootstrap,
                group_id=config.router.group_id,
                client_id="router",
                stopping=ctx.stopping,
            )
            if consumer is None:
                return
            worker = RouterWorker(consumer, publisher, router)
            ctx.readiness["routing"] = worker.progress.check
            ctx.log.info("router.consuming", rollouts=len(router.rollouts))
            await worker.run(ctx.stopping)
        finally:
            if consumer is not None:
                await consumer.stop()
            await publisher.close()

    run_service("router", main, routes=routes)


if __name__ == "__main__":
    serve()
