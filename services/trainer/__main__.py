"""`python -m services.trainer`: LoRA adapters for nominated workflows (see services/trainer/worker.py).

Wiring only: config -> recipe check -> publisher -> consumer -> worker loop. Health on
``trainer.health_port``: /healthz, /readyz (Kafka reachable, consumer started) and /metrics, plus
``GET /status`` with the running job's progress and the last outcomes. The recipe is validated
at start, so a bad option combination stops the service with the fix instead of failing every job.
"""

from __future__ import annotations

from aiohttp import web

from cumulus import topics
from cumulus.consuming import start_consumer
from cumulus.service import ServiceContext, kafka_check, run_service
from services.trainer.recipe_config import load_recipe_config
from services.trainer.worker import TrainerWorker

_WORKERS: dict[str, TrainerWorker] = {}


async def main(ctx: ServiceContext) -> None:
    config = ctx.config
    recipe = load_recipe_config(config.trainer.recipe)
    recipe.resolve()  # refuse e.g. fp16 on CPU now, naming the fix
    publisher = ctx.event_publisher(config.trainer.spool_dir)
    await publisher.start()
    ctx.readiness["kafka"] = kafka_check(config.kafka.bootstrap_servers)
    consumer = await start_consumer(
        topics.CANDIDATES.name,
        bootstrap_servers=config.kafka.bootstrap_servers,
        group_id=config.trainer.group_id,
        client_id="trainer",
        stopping=ctx.stopping,
        # A job holds its candidate uncommitted, without polling, for as long as it trains.
        max_poll_interval_ms=int((config.trainer.job_timeout_s + 600) * 1000),
    )
    try:
        if consumer is not None:
            worker = _WORKERS[ctx.name] = TrainerWorker(consumer, publisher, config)
            ctx.readiness["progress"] = worker.progress.check
            ctx.log.info("trainer.consuming", topic=topics.CANDIDATES.name, jobs=str(worker.jobs_dir))
            await worker.run(ctx.stopping)
    finally:
        if consumer is not None:
            await consumer.stop()
        await publisher.close()


def status_routes(ctx: ServiceContext, app: web.Application) -> None:
    async def status(_: web.Request) -> web.Response:
        worker = _WORKERS.get(ctx.name)
        return web.json_response(worker.status() if worker else {"job": None, "recent": [], "starting": True})

    app.router.add_get("/status", status)


if __name__ == "__main__":
    run_service("trainer", main, routes=status_routes)
