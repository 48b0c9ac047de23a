"""What every service process shares: config, logging, an HTTP health/metrics server, and SIGTERM.

A service is an async ``main(ctx)`` that runs until ``ctx.stopping`` is set; ``run_service``
wires the rest. Health endpoints (on the service's ``health_port``):

- ``GET /healthz``: 200 while the process is alive and its loop responsive (liveness).
- ``GET /readyz``: 200 when every registered readiness check passes, else 503; JSON body
  with each check's result (readiness).
- ``GET /metrics``: Prometheus text format.

Every other route needs an operator token (or, for a tenant's own reads, its API key): see
cumulus/control_auth.py.

A service with an HTTP API of its own (the collector's read API, the router's rollouts, the
trainer's status) mounts its routes on the same app through ``run_service(..., routes=...)``: one
port per service, one server to supervise. Its routes reach the object they read (the worker)
through one ``ServiceApi``: JSON answers, errors as ``{"error", "fix"}`` with the error's HTTP
status, and 503 with that body while the service is still starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import prometheus_client
from aiohttp import web

from cumulus.config import CumulusConfig, ServiceConfig, load_config
from cumulus.control_auth import control_plane_guard
from cumulus.errors import CumulusError, NotReady
from cumulus.kafka import security as kafka_security
from cumulus.kafka.publisher import EventPublisher
from cumulus.logs import StructuredLogger, configure_logging, get_logger

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short reason why not."""
RouteSetup = Callable[["ServiceContext", web.Application], None]
"""Adds a service's own routes to its health app; called once, before the server starts."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
W = TypeVar("W")


@dataclass
class ServiceContext:
    name: str
    config: CumulusConfig
    log: StructuredLogger
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    @property
    def service_config(self) -> ServiceConfig:
        section = getattr(self.config, self.name)
        assert isinstance(section, ServiceConfig)
        return section

    def event_publisher(self, spool_dir: Path | None, **options: Any) -> EventPublisher:
        """This service's publisher (not started); its spool defaults to <state_dir>/spool/<service>."""
        return EventPublisher(
            self.config.kafka.bootstrap_servers,
            spool_dir or self.config.state_dir / "spool" / self.name,
            producer_name=self.name,
            **options,
        )

    async def readiness_report(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        # A snapshot: main() registers checks (kafka, progress) while a probe may be awaiting one.
        for check_name, check in list(self.readiness.items()):
            try:
                problem = await asyncio.wait_for(check(), timeout=2.0)
            except Exception as exc:  # a failing check means "not ready", never a crash
                problem = f"{type(exc).__name__}: {exc}"
            checks[check_name] = {"ok": problem is None, **({"reason": problem} if problem else {})}
        # No checks yet means main() has not got as far as registering them: still starting.
        if not checks:
            checks["started"] = {"ok": False, "reason": "service is starting"}
        ready = all(check["ok"] for check in checks.values()) and not self.stopping.is_set()
        return ready, checks


class ServiceApi(Generic[W]):
    """How a service's HTTP routes reach its worker ``W`` (see the module docstring).

    ``main`` attaches the worker once it exists; until then (and after ``detach``) every route
    made by ``route`` answers 503 ``{"error": "the <service> is still starting", "fix": ...}``.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self.worker: W | None = None

    def attach(self, worker: W) -> None:
        self.worker = worker

    def detach(self) -> None:
        self.worker = None

    def route(self, handler: Callable[[web.Request, W], Awaitable[Any]]) -> Handler:
        """An aiohttp handler answering ``handler(request, worker)`` as JSON."""
        log = get_logger(self.service)

        async def answer(request: web.Request) -> web.StreamResponse:
            if self.worker is None:
                return error_response(
                    NotReady(f"the {self.service} is still starting", fix="retry in a few seconds")
                )
            try:
                body = await handler(request, self.worker)
            except CumulusError as exc:
                if exc.http_status >= 500:
                    log.error("api.failed", path=request.path, error=str(exc))
                return error_response(exc)
            return web.json_response(body, dumps=lambda o: json.dumps(o, default=str))

        return answer


def error_response(exc: CumulusError) -> web.Response:
    """The one error body of every service's HTTP API: ``{"error", "fix"}`` with the error's status."""
    return web.json_response({"error": exc.message, "fix": exc.fix}, status=exc.http_status)


def tcp_check(host: str, port: int) -> ReadinessCheck:
    """A readiness check that passes when host:port accepts a TCP connection."""

    async def check() -> str | None:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
        except (OSError, TimeoutError) as exc:
            return f"{host}:{port} unreachable ({type(exc).__name__})"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None

    return check


def kafka_check(bootstrap_servers: str) -> ReadinessCheck:
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    return tcp_check(host, int(port))


def build_health_app(ctx: ServiceContext, routes: RouteSetup | None = None) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(
            {"service": ctx.name, "alive": True, "uptime_s": time.time() - ctx.started_at}
        )

    async def readyz(_: web.Request) -> web.Response:
        ready, checks = await ctx.readiness_report()
        body = {"service": ctx.name, "ready": ready, "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=prometheus_client.generate_latest(), content_type="text/plain")

    # Everything but health, readiness and metrics needs a token (cumulus/control_auth.py).
    config = ctx.config
    app = web.Application(middlewares=[control_plane_guard(config.state_dir, config.api_keys_path)])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if routes is not None:
        routes(ctx, app)
    return app


async def _serve(
    ctx: ServiceContext,
    main: Callable[[ServiceContext], Awaitable[None]],
    routes: RouteSetup | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ctx.stopping.set)
    cfg = ctx.service_config
    runner = web.AppRunner(build_health_app(ctx, routes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.host, cfg.health_port).start()
    ctx.log.info("service.started", health=f"http://{cfg.host}:{cfg.health_port}/readyz")
    try:
        await main(ctx)
    finally:
        ctx.stopping.set()
        await runner.cleanup()
        ctx.log.info("service.stopped", uptime_s=round(time.time() - ctx.started_at, 1))


def run_service(
    name: str, main: Callable[[ServiceContext], Awaitable[None]], *, routes: RouteSetup | None = None
) -> None:
    """Entry point of ``python -m services.<name>``: load config, serve health, run main until SIGTERM.

    ``routes`` mounts the service's own HTTP API on the health port (see the module docstring).
    """
    config = load_config()
    configure_logging(config.log_format)
    kafka_security.configure(kafka_security.security_for(config, name))  # its own principal
    ctx = ServiceContext(name=name, config=config, log=get_logger(name))
    asyncio.run(_serve(ctx, main, routes))
