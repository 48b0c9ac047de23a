"""Admission at the gRPC edge: no RPC reaches a handler without a valid API key.

The interceptor runs when a call arrives, before its handler (and, for client streams, before
any request message is read): a call without a valid ``authorization: Bearer <key>`` is answered
UNAUTHENTICATED by a stand-in handler and the real one never runs. Handlers still resolve the
tenant themselves (a cached lookup) because grpc.aio gives an interceptor no way to hand them a
value. Open to all: gRPC health, reflection, and KServe's ServerLive/ServerReady, which load
balancers probe without credentials. The size of a message is bounded by the server's receive
limit (``gateway.max_message_bytes``) before any of this runs; the number of calls at once by
``gateway.max_concurrent_rpcs``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

import grpc

from cumulus.errors import Unauthenticated
from cumulus.logs import get_logger
from services.gateway.auth import Authenticator

log = get_logger("gateway")

OPEN_METHODS = frozenset(
    {
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    }
)
"""Methods of guarded services that stay open: liveness and readiness probes."""


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # untyped base
    """Refuses every call to ``services`` (full names) that does not carry a valid API key."""

    def __init__(self, auth: Authenticator, services: Collection[str]) -> None:
        self.auth = auth
        self.prefixes = tuple(f"/{name}/" for name in services)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if not method.startswith(self.prefixes) or method in OPEN_METHODS:
            return await continuation(details)
        try:
            self.auth.tenant_for_metadata(details.invocation_metadata)
        except Unauthenticated as exc:
            handler = await continuation(details)
            log.info("rpc.unauthenticated", method=method, reason=exc.message)
            return _refusal(handler, f"{exc.message}; {exc.fix}" if exc.fix else exc.message)
        return await continuation(details)


def _refusal(handler: grpc.RpcMethodHandler | None, message: str) -> grpc.RpcMethodHandler | None:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED at once."""
    if handler is None:  # unknown method: grpc answers UNIMPLEMENTED
        return None

    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover  # makes this an async generator, as a streaming handler must be

    kind = (handler.request_streaming, handler.response_streaming)
    make, behaviour = {
        (False, False): (grpc.unary_unary_rpc_method_handler, refuse),
        (False, True): (grpc.unary_stream_rpc_method_handler, refuse_stream),
        (True, False): (grpc.stream_unary_rpc_method_handler, refuse),
        (True, True): (grpc.stream_stream_rpc_method_handler, refuse_stream),
    }[kind]
    return make(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
