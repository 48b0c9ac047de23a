"""The gateway's grpc.aio server: cumulus.v1.Gateway, the KServe v2 drop-in, health and reflection.

gRPC health reports SERVING while the gateway is ready (its readiness is re-checked every second)
and NOT_SERVING from the moment shutdown begins. Shutdown stops accepting RPCs, lets in-flight
ones finish within the grace period, then gives running shadow copies the same grace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE

from cumulus.logs import get_logger
from cumulus.v1 import gateway_pb2, gateway_pb2_grpc
from services.gateway.admission import AuthInterceptor
from services.gateway.core import GatewayCore
from services.gateway.error_mapping import ErrorMapping
from services.gateway.kserve import KServeServicer
from services.gateway.servicer import GatewayServicer

log = get_logger("gateway")

GATEWAY_SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
KSERVE_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
_HEALTH_PERIOD_S = 1.0

Readiness = Callable[[], Awaitable[bool]]


async def _always_ready() -> bool:
    return True


class GatewayServer:
    """Serves a GatewayCore on one port (see the module docstring)."""

    def __init__(self, core: GatewayCore, ready: Readiness = _always_ready) -> None:
        self.core = core
        self.ready = ready
        self.port = 0
        self._health = HealthServicer()
        gateway = core.config.gateway
        self._server = grpc.aio.server(
            # Authentication before any handler runs (services/gateway/admission.py).
            interceptors=[AuthInterceptor(core.auth, (GATEWAY_SERVICE, KSERVE_SERVICE))],
            options=[
                ("grpc.so_reuseport", 0),  # a second gateway on the same port must fail, not share it
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
                # A client's message is bounded before it costs memory: grpc refuses a larger one
                # with RESOURCE_EXHAUSTED while reading it.
                ("grpc.max_receive_message_length", gateway.max_message_bytes),
            ],
            maximum_concurrent_rpcs=gateway.max_concurrent_rpcs,
        )
        mapped = ErrorMapping(self._server)
        # The generated *_grpc modules carry no type hints.
        gateway_pb2_grpc.add_GatewayServicer_to_server(GatewayServicer(core), mapped)  # type: ignore[no-untyped-call]
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(KServeServicer(core, ready), mapped)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (
                GATEWAY_SERVICE,
                KSERVE_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )
        self._health_task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (0 = any free port), start serving, and return the bound port."""
        tls = self.core.config.gateway_server_tls
        if tls is None:
            self.port = self._server.add_insecure_port(f"{host}:{port}")
        else:
            # TLS only: a plaintext client's handshake fails before any of its bytes reach a handler.
            self.port = self._server.add_secure_port(f"{host}:{port}", tls.credentials())
        await self._server.start()
        self._health_task = asyncio.create_task(self._report_health(), name="grpc-health")
        log.info(
            "grpc.serving",
            address=f"{host}:{self.port}",
            tls="off" if tls is None else ("mutual" if tls.client_ca_file else "server"),
            services=[GATEWAY_SERVICE, KSERVE_SERVICE],
        )
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting RPCs, drain in-flight ones within ``grace_s``, then the shadow copies."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self._health.enter_graceful_shutdown()
        log.info("grpc.draining", grace_s=grace_s)
        await self._server.stop(grace_s)
        await self.core.shadows.drain(grace_s)
        log.info("grpc.stopped")

    async def _report_health(self) -> None:
        serving: bool | None = None
        while True:
            try:
                ready = await self.ready()
            except Exception:  # a failing readiness check means "not serving", never a crash
                ready = False
            if ready != serving:
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if ready
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for service in ("", GATEWAY_SERVICE, KSERVE_SERVICE):
                    await self._health.set(service, status)
                serving = ready
            await asyncio.sleep(_HEALTH_PERIOD_S)
