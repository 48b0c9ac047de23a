"""The KServe v2 gRPC drop-in: ``inference.GRPCInferenceService`` served by the gateway itself.

Tools that already speak to Triton (tritonclient, perf_analyzer) point at the gateway unchanged and
add ``authorization: Bearer <key>`` to their headers. Inference requests (ModelInfer,
ModelStreamInfer) for models ``live`` and ``small`` are routed, shadowed and captured exactly like
Generate; the client's own request proto is forwarded to Triton (same inputs, same id). Readiness,
metadata and config calls are answered from Triton's own.

Because the prompt arrives already rendered for the model the client names, only route targets on
that same model may answer it (see routes.restricted_to_model). The workflow may be named by the
request parameter ``cumulus_workflow`` or the header ``x-cumulus-workflow`` (the session key by
``cumulus_session_key`` / ``x-cumulus-session-key``); otherwise it is derived from the prompt.
ModelInfer also works for the decoupled models Triton itself only serves over streams: the gateway
streams and answers with the whole text. On a stream, requests are served concurrently and a
failed request is answered with an ``error_message`` on the stream, as Triton does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from cumulus.errors import CumulusError, InvalidArgument, NotFound
from cumulus.logs import get_logger
from cumulus.trtllm import interface, tensors
from cumulus.v1 import common_pb2, events_pb2
from services.gateway.calls import Call
from services.gateway.core import GatewayCore
from services.gateway.error_mapping import refuse_undecodable, status_for
from services.gateway.routes import restricted_to_model
from services.gateway.validation import check_identifier
from services.gateway.workflows import resolve_text

log = get_logger("gateway")

SERVED_MODELS = ("live", "small")
CLIENT_INPUTS = frozenset({"text_input", "max_tokens", "stream", "temperature", "top_p", "stop_words"})
"""The TensorRT-LLM inputs a client may send. The ``lora_*`` tensors are the gateway's alone: the
route picks the adapter, and a client naming a task id (or sending weights for one) could run or
overwrite another tenant's adapter."""
_PARAMS = {"workflow": "cumulus_workflow", "session_key": "cumulus_session_key"}
CLIENT_PARAMETERS = frozenset({*_PARAMS.values(), interface.EMPTY_FINAL, "priority", "timeout"})
"""Request parameters a client may send (tritonclient sets ``priority``/``timeout`` when asked)."""
_HEADERS = {"workflow": "x-cumulus-workflow", "session_key": "x-cumulus-session-key"}
_METADATA_TIMEOUT_S = 10.0


class KServeServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]  # untyped base
    """KServe v2 inference over the gateway (see the module docstring)."""

    def __init__(self, core: GatewayCore, ready: Callable[[], Awaitable[bool]]) -> None:
        self.core = core
        self.ready = ready

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=await self.ready())

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.core.triton.call("ServerMetadata", request, _METADATA_TIMEOUT_S)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        _check_model(request.name)
        return await self.core.triton.call("ModelReady", request, _METADATA_TIMEOUT_S)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        _check_model(request.name)
        return await self.core.triton.call("ModelMetadata", request, _METADATA_TIMEOUT_S)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        _check_model(request.name)
        return await self.core.triton.call("ModelConfig", request, _METADATA_TIMEOUT_S)

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        tenant = self.core.auth.tenant(context)
        call = self._admit(request, tenant, context, api="kserve_infer")
        async for _ in self.core.dispatcher.run(call):
            pass
        outcome = call.outcome
        assert outcome is not None
        whole = tensors.Delta(outcome.text, outcome.prompt_tokens, outcome.completion_tokens)
        return tensors.make_response(request.model_name, request.id, whole)

    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[service_pb2.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        tenant = self.core.auth.tenant(context)
        writing = asyncio.Lock()  # grpc takes one write at a time; requests answer concurrently
        # Bounded in flight: at the limit the stream is not read on, so the client's flow control
        # (not the gateway's memory) holds what it sends next.
        slots = asyncio.Semaphore(self.core.config.gateway.max_stream_in_flight)
        serving: set[asyncio.Task[None]] = set()
        try:
            while (request := await context.read()) is not grpc.aio.EOF:
                # Every request of a long stream is checked again (a cached lookup, dropped when the
                # key file changes), so a revoked key ends its open streams at the next request.
                self.core.auth.tenant(context)
                refuse_undecodable(request)  # garbage on the stream ends it: INVALID_ARGUMENT
                await slots.acquire()
                task = asyncio.create_task(self._serve_streamed(request, tenant, context, writing))
                serving.add(task)
                task.add_done_callback(serving.discard)
                task.add_done_callback(lambda _: slots.release())
            if serving:
                await asyncio.gather(*serving)
        finally:
            for task in serving:  # the client went away: stop its requests
                task.cancel()

    async def _serve_streamed(
        self,
        request: service_pb2.ModelInferRequest,
        tenant: str,
        context: grpc.aio.ServicerContext,
        writing: asyncio.Lock,
    ) -> None:
        flag = request.parameters.get(interface.EMPTY_FINAL)
        wants_empty_final = flag is not None and flag.bool_param
        try:
            call = self._admit(request, tenant, context, api="kserve_stream")
            async for response, delta in self.core.dispatcher.run(call):
                if delta is not None or (wants_empty_final and tensors.is_final(response)):
                    async with writing:
                        await context.write(service_pb2.ModelStreamInferResponse(infer_response=response))
        except Exception as exc:
            code, message = status_for(exc)
            if not isinstance(exc, CumulusError):
                log.exception(
                    "kserve.stream_request_crashed", model=request.model_name, request_id=request.id
                )
            reply = service_pb2.ModelStreamInferResponse(error_message=f"{code.name}: {message}")
            async with writing:
                await context.write(reply)

    def _admit(
        self,
        request: service_pb2.ModelInferRequest,
        tenant: str,
        context: grpc.aio.ServicerContext,
        *,
        api: str,
    ) -> Call:
        core = self.core
        model = request.model_name
        _check_model(model)
        request.DiscardUnknownFields()  # forwarded to Triton: only fields of the KServe protocol
        _check_client_tensors(request)
        text = tensors.input_text(request, "text_input")
        if not text:
            raise InvalidArgument("text_input", "required, with one non-empty prompt")
        if len(text) > core.limits.max_prompt_chars:
            raise InvalidArgument(
                "text_input", f"prompt exceeds the limit of {core.limits.max_prompt_chars} characters"
            )
        max_tokens = tensors.input_scalar(request, "max_tokens")
        if max_tokens is None or not 1 <= max_tokens <= core.limits.max_tokens_cap:
            raise InvalidArgument("max_tokens", f"required, between 1 and {core.limits.max_tokens_cap}")
        named = _option(request, context, "workflow")
        session_key = _option(request, context, "session_key")
        check_identifier("workflow", named)
        request_id = request.id or uuid.uuid4().hex
        workflow = resolve_text(tenant, named, text)
        plan = restricted_to_model(core.book.plan(tenant, workflow.name, session_key or request_id), model)

        capture = events_pb2.InferenceEvent(
            params=common_pb2.GenerationParams(
                max_tokens=int(max_tokens),
                temperature=tensors.input_scalar(request, "temperature") or 0.0,
                top_p=tensors.input_scalar(request, "top_p") or 0.0,
            ),
            metadata={"api": "kserve", "model": model},
        )
        return Call(
            api=api,
            tenant=tenant,
            workflow=workflow,
            request_id=request_id,
            session_key=session_key,
            plan=plan,
            prompt=ClientPrompt(request, text),
            timeout_s=core.timeout_s(context.time_remaining()),
            capture=capture,
        )


class ClientPrompt:
    """A prompt the client rendered itself (``CallPrompt``): forwarded as its own request proto."""

    prunable = False

    def __init__(self, request: service_pb2.ModelInferRequest, text: str) -> None:
        self._request = request
        self._text = text

    def text(self, model: str, prune: tuple[str, ...]) -> str:
        return self._text

    def request(self, target: common_pb2.RouteTarget, text: str) -> service_pb2.ModelInferRequest:
        forwarded = service_pb2.ModelInferRequest()
        forwarded.CopyFrom(self._request)
        for name in _PARAMS.values():
            if name in forwarded.parameters:
                del forwarded.parameters[name]
        return forwarded


def _check_client_tensors(request: service_pb2.ModelInferRequest) -> None:
    """Only the inputs and parameters of CLIENT_INPUTS / CLIENT_PARAMETERS; the rest is refused by name."""
    for tensor in request.inputs:
        if tensor.name.startswith("lora_"):
            raise InvalidArgument(
                tensor.name,
                "LoRA inputs are set by the gateway's route, never by a client",
                fix="leave out lora_task_id/lora_weights/lora_config; name the workflow instead",
            )
        if tensor.name not in CLIENT_INPUTS:
            raise InvalidArgument(tensor.name, f"unknown input; send only {', '.join(sorted(CLIENT_INPUTS))}")
    for name in request.parameters:
        if name not in CLIENT_PARAMETERS:
            raise InvalidArgument(
                name, f"unknown request parameter; send only {', '.join(sorted(CLIENT_PARAMETERS))}"
            )


def _check_model(name: str) -> None:
    if name not in SERVED_MODELS:
        raise NotFound(f"unknown model {name!r}", fix=f"use one of {', '.join(SERVED_MODELS)}")


def _option(request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext, key: str) -> str:
    parameter = request.parameters.get(_PARAMS[key])
    if parameter is not None and parameter.string_param:
        return str(parameter.string_param)
    header = _HEADERS[key]
    for name, value in context.invocation_metadata() or ():
        if name == header:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ""
