"""The one place where exceptions become gRPC statuses, for every RPC the gateway serves.

``ErrorMapping`` wraps the handlers of the gateway's own services (cumulus.v1.Gateway and the
KServe v2 drop-in) as they are registered: a ``CumulusError`` is answered with its ``grpc_status``
and message (INVALID_ARGUMENT names the field, UNAUTHENTICATED, UNAVAILABLE, ...); anything else is
a bug, logged with its traceback and answered INTERNAL without internals leaking to the client.

Wrapping at registration rather than in a server interceptor saves grpc.aio an interceptor chain
per RPC (~60 us of CPU per request, ~5% of what a KServe request costs the gateway).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from cumulus.errors import CumulusError, InvalidArgument, ResourceExhausted
from cumulus.logs import get_logger

log = get_logger("gateway")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message for ``exc``."""
    if isinstance(exc, CumulusError):
        return exc.grpc_status, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error (logged by the gateway)"


async def _abort(exc: Exception, context: grpc.aio.ServicerContext, method: str) -> None:
    code, message = status_for(exc)
    if not isinstance(exc, CumulusError):
        log.exception("rpc.crashed", method=method, error=f"{type(exc).__name__}: {exc}")
    trailers: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, ResourceExhausted):  # the retry hint, machine-readable
        trailers = (("retry-after-ms", str(math.ceil(exc.retry_after_s * 1000))),)
    await context.abort(code, message, trailing_metadata=trailers)


class Undecodable:
    """What a message that is not valid protobuf of its type reads as; handlers refuse it.

    grpc would answer such a message INTERNAL ("Exception deserializing request!"), which reads as
    the gateway's bug; it is the client's, so it gets INVALID_ARGUMENT naming the message type."""

    def __init__(self, type_name: str, error: Exception) -> None:
        self.error = InvalidArgument("request", f"not a valid {type_name} message: {error}")


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    type_name = getattr(getattr(deserialize, "__self__", None), "__name__", "protobuf")

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as exc:
            return Undecodable(type_name, exc)

    return parse


def refuse_undecodable(request: Any) -> None:
    """Raise the client's error for a message that did not decode (for streams read by a handler)."""
    if isinstance(request, Undecodable):
        raise request.error


def _unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            refuse_undecodable(request)
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(exc, context, method)

    return wrapped


def _streaming(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            refuse_undecodable(request)
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(exc, context, method)

    return wrapped


class ErrorMapping:
    """Stands in for ``server`` in the generated ``add_*Servicer_to_server`` functions.

    Each handler they register reaches ``server`` wrapped (see the module docstring).
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Ignored: the generated code registers the same handlers again by name, below."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        wrapped = {name: _wrap(handler, f"/{service}/{name}") for name, handler in handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)


def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    codec = {
        "request_deserializer": _lenient(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, method), **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_either(handler.unary_stream, method), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, method), **codec)
    return grpc.stream_stream_rpc_method_handler(_either(handler.stream_stream, method), **codec)


def _either(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    # A streaming handler is an async generator, or a coroutine writing with context.write().
    return _streaming(behavior, method) if inspect.isasyncgenfunction(behavior) else _unary(behavior, method)
