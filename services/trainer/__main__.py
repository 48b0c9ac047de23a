"""`python -m services.trainer`: LoRA adapters for nominated workflows (see services/trainer/handler.py).

Wiring only: config -> recipe check -> the handler on the consume runtime. Health on
``trainer.health_port``: /healthz, /readyz and /metrics, plus ``GET /status`` with the running
job's progress and the last outcomes. The recipe is validated at start, so a bad option
combination stops the service with the fix instead of failing every job.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cumulus.kafka.runtime import KafkaRuntime
from cumulus.service import ServiceApi, ServiceContext, run_service
from services.trainer.handler import TrainerHandler, subscription
from services.trainer.recipe_config import load_recipe_config

API = ServiceApi[TrainerHandler]("trainer")


async def main(ctx: ServiceContext) -> None:
    config = ctx.config
    recipe = load_recipe_config(config.trainer.recipe)
    recipe.resolve()  # refuse e.g. fp16 on CPU now, naming the fix
    async with KafkaRuntime(ctx, ctx.event_publisher(config.trainer.spool_dir)) as kafka:
        handler = TrainerHandler(kafka.publisher, config)
        API.attach(handler)
        try:
            await kafka.consume(subscription(config), handler)
        finally:
            API.detach()


def status_routes(_: ServiceContext, app: web.Application) -> None:
    async def status(_: web.Request, handler: TrainerHandler) -> dict[str, Any]:
        return handler.status()

    app.router.add_get("/status", API.route(status))


if __name__ == "__main__":
    run_service("trainer", main, routes=status_routes)
