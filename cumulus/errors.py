"""One root error for the whole system, each subclass carrying its gRPC and HTTP status.

Lower-level exceptions (aiokafka, tritonclient, clickhouse-connect, OSError) are translated at
one boundary into the most specific of these, always with ``raise ... from exc`` so the cause
survives in tracebacks and logs.
"""

from __future__ import annotations

import grpc


class CumulusError(Exception):
    """Root of every error this project raises on purpose."""

    grpc_status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} (fix: {fix})" if fix else message)


class InvalidArgument(CumulusError):
    """The caller sent something we will never accept; ``field`` names the culprit."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400

    def __init__(self, field: str, problem: str, *, fix: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}", fix=fix)


class Unauthenticated(CumulusError):
    grpc_status = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class PermissionDenied(CumulusError):
    grpc_status = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class NotFound(CumulusError):
    grpc_status = grpc.StatusCode.NOT_FOUND
    http_status = 404


class NotReady(CumulusError):
    """A dependency (Kafka, Triton, ClickHouse) is not reachable or not ready yet."""

    grpc_status = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class ResourceExhausted(CumulusError):
    """A limit or quota was reached; the caller may retry after ``retry_after_s``."""

    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        self.retry_after_s = max(retry_after_s, 0.001)
        super().__init__(message, fix=f"retry in {self.retry_after_s:.3g} s, or ask for a higher limit")


class ConfigError(CumulusError):
    """The configuration is invalid; the message names the source, the field and the fix."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 500


class MissingTool(CumulusError):
    """A program the local stack needs (java, mvn) is not installed."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class StackError(CumulusError):
    """The local stack could not be started, stopped or inspected."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class EventDecodeError(CumulusError):
    """A Kafka record could not be decoded into its topic's event type (goes to the dead letter)."""

    grpc_status = grpc.StatusCode.DATA_LOSS
    http_status = 422


class ArtifactError(CumulusError):
    """An artifact (dataset, adapter) is missing, incomplete, or does not match its manifest."""

    grpc_status = grpc.StatusCode.DATA_LOSS
    http_status = 500


class Conflict(CumulusError):
    """The request is valid but the current state forbids it; the message says what holds it."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409
