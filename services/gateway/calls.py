"""One request's journey through the gateway: what was asked (``Call``) and what came of it (``Outcome``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from tritonclient.grpc import service_pb2

from cumulus.errors import CumulusError
from cumulus.v1 import common_pb2, events_pb2
from services.gateway.routes import RoutePlan
from services.gateway.workflows import Workflow

RequestFactory = Callable[[common_pb2.RouteTarget], tuple[service_pb2.ModelInferRequest, str]]
"""Builds the Triton request for one route target, and the prompt text it carries."""


@dataclass
class Outcome:
    """What the answering model produced, or how the request failed."""

    route: common_pb2.Route
    prompt_text: str = ""
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    error: BaseException | None = None
    candidate_error: str = ""
    """Why the canary candidate failed when the live model answered instead (mode FALLBACK)."""

    @property
    def answered(self) -> bool:
        """True once any output reached (or was buffered for) the client."""
        return self.ttft_ms > 0.0

    @property
    def usage(self) -> common_pb2.Usage:
        return common_pb2.Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)

    @property
    def error_code(self) -> str:
        """gRPC status name of the failure ('' when it succeeded)."""
        if self.error is None:
            return ""
        if isinstance(self.error, CumulusError):
            return self.error.grpc_status.name
        if isinstance(self.error, asyncio.CancelledError | GeneratorExit | grpc.aio.AbortError):
            return grpc.StatusCode.CANCELLED.name  # the client went away (or the call was aborted)
        return grpc.StatusCode.INTERNAL.name


@dataclass
class Call:
    """An admitted request: who sent it, which workflow it is, and where it is routed."""

    api: str
    """generate, generate_stream, kserve_infer or kserve_stream."""
    tenant: str
    workflow: Workflow
    request_id: str
    session_key: str
    plan: RoutePlan
    factory: RequestFactory
    timeout_s: float
    capture: events_pb2.InferenceEvent = field(default_factory=events_pb2.InferenceEvent)
    """The request half of its inference event (messages, tools, params, metadata), filled at admission."""
    started: float = field(default_factory=time.monotonic)
    outcome: Outcome | None = None

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0
