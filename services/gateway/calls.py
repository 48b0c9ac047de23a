"""One request's journey through the gateway: what was asked (``Call``) and what came of it (``Outcome``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from tritonclient.grpc import service_pb2

from cumulus.errors import CumulusError
from cumulus.v1 import common_pb2, events_pb2
from services.gateway.routes import RoutePlan
from services.gateway.workflows import Workflow


class CallPrompt(Protocol):
    """A call's prompt as each target gets it: chat messages rendered per model, or the client's own text."""

    prunable: bool
    """False for a prompt the client rendered itself (the KServe drop-in): nothing can be left out."""

    def text(self, model: str, prune: tuple[str, ...]) -> str:
        """The prompt for ``model`` without the parts in ``prune`` (rendered once per model and pruning)."""
        ...

    def request(self, target: common_pb2.RouteTarget, text: str) -> service_pb2.ModelInferRequest:
        """The Triton request that carries ``text`` to ``target``."""
        ...


@dataclass
class Outcome:
    """What the answering model produced, or how the request failed."""

    route: common_pb2.Route
    prompt_text: str = ""
    pruned: tuple[str, ...] = ()
    """The parts ``prompt_text`` was rendered without (the adapter was trained without them)."""
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
            return str(self.error.grpc_status.name)
        if isinstance(self.error, asyncio.CancelledError | GeneratorExit | grpc.aio.AbortError):
            return str(grpc.StatusCode.CANCELLED.name)  # the client went away (or the call was aborted)
        return str(grpc.StatusCode.INTERNAL.name)


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
    prompt: CallPrompt
    timeout_s: float
    capture: events_pb2.InferenceEvent = field(default_factory=events_pb2.InferenceEvent)
    """The request half of its inference event (messages, tools, params, metadata), filled at admission."""
    started: float = field(default_factory=time.monotonic)
    outcome: Outcome | None = None

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0
