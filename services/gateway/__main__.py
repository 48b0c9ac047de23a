"""``python -m services.gateway``: the front doors: gRPC (cumulus.v1.Gateway + KServe v2 drop-in)
and OpenAI-compatible HTTP (``gateway.http_port``).

Configured like every service (cumulus.config): ``gateway.*`` for ports, limits, shadow and
shutdown settings, ``triton.*`` for where Triton is and which base models ``live``/``small`` are
(and ``trainer.students``, each a Triton model of its own), ``kafka.bootstrap_servers`` for events
and routes. /readyz (health port) and gRPC health report
ready once Triton answers, the route table has been read and the tokenizers are loaded.
The health port also serves ``GET /api/v1/routes`` (route_listing.py): tables in force and stale ones.
SIGTERM: stop accepting RPCs, drain in-flight ones (``gateway.drain_grace_s``), flush the events.

The event loop is uvloop's: grpc.aio hands every completed gRPC operation to the loop, several per
request, and libuv's loop does that work with ~5-13% less CPU than asyncio's (bench/gateway_overhead.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub on these machines: fail fast, never wait

import asyncio
import gc

import uvloop

from cumulus.errors import CumulusError
from cumulus.service import ServiceContext, run_service
from services.gateway import metrics, route_listing
from services.gateway.adapters import ArtifactAdapters
from services.gateway.core import GatewayCore
from services.gateway.openai_http import OpenAIDoor
from services.gateway.rendering import TokenizerRenderer
from services.gateway.route_feed import RouteFeed
from services.gateway.server import GatewayServer
from services.gateway.triton import TritonClient


async def main(ctx: ServiceContext) -> None:
    config, gateway = ctx.config, ctx.config.gateway
    publisher = ctx.event_publisher(
        gateway.spool_dir, max_spool_bytes=gateway.max_spool_bytes, linger_ms=gateway.events_linger_ms
    )
    triton = TritonClient(config.triton.grpc_url, lanes=gateway.triton_streams)
    renderer = TokenizerRenderer(config.served_models, config.models_dir)
    core = GatewayCore.build(
        config,
        triton=triton,
        renderer=renderer,
        sink=publisher,
        adapters=ArtifactAdapters(config.artifacts_dir),
    )
    feed = RouteFeed(config.kafka.bootstrap_servers, core.book, publisher)

    async def ready() -> bool:
        return (await ctx.readiness_report())[0]

    server = GatewayServer(core, ready)
    door = OpenAIDoor(core)

    async def serving() -> str | None:
        return None if server.port else "gRPC server not started yet"

    # Registered before the first await: /readyz is already up and must not say ready too early.
    ctx.readiness.update(
        grpc=serving, triton=triton.readiness, routes=feed.readiness, tokenizers=renderer.readiness
    )
    metrics.watch_route_tables(lambda: len(core.book), lambda: len(core.book.stale()))
    route_listing.API.attach(core.book)
    loading = asyncio.create_task(_load_tokenizers(ctx, renderer))
    try:
        await publisher.start()
        feed.start()
        await server.start(gateway.host, gateway.grpc_port)
        if gateway.http_port:
            await door.start(gateway.host, gateway.http_port)
        await ctx.stopping.wait()
    finally:
        await door.stop(gateway.drain_grace_s)
        await server.stop(gateway.drain_grace_s)
        loading.cancel()
        await feed.stop()
        await publisher.close(gateway.publisher_close_timeout_s)
        await triton.close()
        if core.dispatcher.caller.live is not None:
            await core.dispatcher.caller.live.close()


async def _load_tokenizers(ctx: ServiceContext, renderer: TokenizerRenderer) -> None:
    try:
        await renderer.load()
        ctx.log.info("tokenizers.loaded", models=renderer.model_ids)
        # Startup leaves ~430k objects (modules, tokenizers) that live as long as the process; a
        # full collection walking them pauses every request in flight for ~100-200 ms.
        gc.freeze()
    except CumulusError as exc:  # stays not ready; the reason is in the log and in /readyz
        ctx.log.error("tokenizers.failed", error=str(exc))


if __name__ == "__main__":
    uvloop.install()
    run_service("gateway", main, routes=route_listing.mount(route_listing.API))
