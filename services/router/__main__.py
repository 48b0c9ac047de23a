"""`python -m services.router`: rollouts of adapters with sequential-test gates (see services/router/).

Wiring only: restore the rollouts from Kafka (services/router/state.py), republish any route table
that lags its rollout, then run the handler (services/router/handler.py) on the consume runtime,
with its watch beside it (verdict starvation, the route tables' heartbeat).
The health port also serves ``GET /api/v1/rollouts`` (listing.py), which `cumulus rollout list` reads.
"""

from __future__ import annotations

import asyncio

from cumulus.artifacts import ArtifactStore
from cumulus.kafka.runtime import KafkaRuntime
from cumulus.kafka.signing import CommandSigner
from cumulus.service import ServiceApi, ServiceContext, run_service
from services.router.command_guard import CommandGuard
from services.router.core import Router
from services.router.handler import RouterHandler, adapter_problem, subscription
from services.router.listing import mount
from services.router.restore import restore
from services.router.state import load_state

API = ServiceApi[Router]("router")


async def main(ctx: ServiceContext) -> None:
    config = ctx.config

    async def restored() -> str | None:
        return None if API.worker is not None else "reading rollouts and route tables back from Kafka"

    ctx.readiness["restored"] = restored
    async with KafkaRuntime(ctx, ctx.event_publisher(config.router.spool_dir)) as kafka:
        state = await load_state(config.kafka.bootstrap_servers, ctx.stopping)
        if state is None:
            return
        router = Router(config.router, config.triton_model_for)
        signer = CommandSigner.from_file(config.command_key_file)
        guard = CommandGuard(config.state_dir, config.router.command_max_age_s)
        artifacts = ArtifactStore(config.artifacts_dir)
        handler = RouterHandler(kafka.publisher, router, signer, guard, artifacts)
        # A version is one only if it could have started a rollout: in the store, and pinned.
        versions = [a for a in state.adapters if adapter_problem(a, artifacts) is None]
        handler.publish(restore(router, state.tables, state.events, versions))
        API.attach(router)
        watching = asyncio.create_task(handler.watch(ctx.stopping, config.router.heartbeat_s))
        try:
            await kafka.consume(subscription(config.router), handler)
        finally:
            watching.cancel()
            API.detach()


if __name__ == "__main__":
    run_service("router", main, routes=mount(API))
