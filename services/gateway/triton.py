"""The gateway's Triton client: one reused gRPC channel, timeouts, and the LoRA cache-miss protocol.

Every model speaks the TensorRT-LLM interface and is decoupled, so every inference goes over
``ModelStreamInfer``, with ``triton_enable_empty_final_response`` set so the end of a request is
explicit; requests share a few long-lived streams on one channel (multiplex.py). The client uses
tritonclient's generated KServe v2 stub directly (with tritonclient's channel settings): the
KServe drop-in forwards its clients' own request protos, which tritonclient's ``InferInput`` API
cannot carry through unchanged. Triton's errors are translated here, at one boundary, into
cumulus errors (``raise ... from exc``).

``infer_with_lora`` is the one function that knows the cache-miss resend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

from cumulus.errors import CumulusError, InvalidArgument
from cumulus.trtllm import tensors
from cumulus.trtllm.errors import LoraNotCached, translate_rpc_error
from cumulus.trtllm.interface import batch_of_one
from cumulus.v1 import common_pb2
from services.gateway.adapters import AdapterSource
from services.gateway.multiplex import Multiplexer, stream_alone
from services.gateway.validation import Sampling


class TritonBackend(Protocol):
    """What the gateway needs from Triton; tests inject fakes of it."""

    def stream(
        self, request: service_pb2.ModelInferRequest, timeout_s: float
    ) -> AsyncIterator[service_pb2.ModelInferResponse]:
        """Send one request, yield its responses up to and including the final-flagged one."""
        ...

    async def call(self, method: str, request: Any, timeout_s: float) -> Any:
        """A unary KServe RPC by name (ServerReady, ModelMetadata, ModelConfig, ...)."""
        ...


class TritonClient:
    """TritonBackend over one gRPC channel to ``url`` (see the module docstring)."""

    def __init__(self, url: str, lanes: int = 4) -> None:
        """``lanes``: shared streams to Triton; 0 = one stream per request (see multiplex.py)."""
        self.url = url
        keepalive = KeepAliveOptions()
        self._channel = grpc.aio.insecure_channel(
            url,
            options=[
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
                ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ],
        )
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._streams = Multiplexer(self._stub, url, lanes) if lanes > 0 else None

    async def close(self) -> None:
        if self._streams is not None:
            await self._streams.close()
        await self._channel.close()

    def stream(
        self, request: service_pb2.ModelInferRequest, timeout_s: float
    ) -> AsyncIterator[service_pb2.ModelInferResponse]:
        if self._streams is None:
            return stream_alone(self._stub, self.url, request, timeout_s)
        return self._streams.stream(request, timeout_s)

    async def call(self, method: str, request: Any, timeout_s: float) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise translate_rpc_error(exc, self.url, getattr(request, "name", "")) from exc

    async def readiness(self) -> str | None:
        """Readiness check: None when Triton reports itself ready."""
        try:
            response = await self.call("ServerReady", service_pb2.ServerReadyRequest(), 2.0)
        except CumulusError as exc:
            return str(exc)
        return None if response.ready else f"Triton at {self.url} is not ready"


def build_request(
    model: str, prompt: str, sampling: Sampling, *, stream: bool, request_id: str
) -> service_pb2.ModelInferRequest:
    """A generate request for ``prompt`` with the client's validated sampling parameters."""
    return tensors.build_request(
        model,
        prompt,
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        stop=sampling.stop,
        stream=stream,
        request_id=request_id,
    )


def infer_with_lora(
    triton: TritonBackend,
    request: service_pb2.ModelInferRequest,
    target: common_pb2.RouteTarget,
    adapters: AdapterSource,
    *,
    workflow: str,
    timeout_s: float,
) -> AsyncIterator[service_pb2.ModelInferResponse]:
    """Run ``request`` on ``target`` (its model, and its adapter when it names one); yield its responses.

    An adapter is first named by ``lora_task_id`` alone; when Triton answers that the task is
    not in its cache, the request is sent again with the adapter's ``lora_weights`` and
    ``lora_config`` (loaded from the artifact store), after which Triton caches it.
    """
    request.model_name = target.model
    if not target.lora_task_id:
        return triton.stream(request, timeout_s)  # the hot path: no generator of our own in between
    if not tensors.uses_raw_contents(request):
        raise InvalidArgument("inputs", "adapter routes need raw_input_contents (as tritonclient sends)")
    tensors.add_input(request, "lora_task_id", batch_of_one("lora_task_id", target.lora_task_id))
    return _with_cache_miss_resend(triton, request, target, adapters, workflow, timeout_s)


async def _with_cache_miss_resend(
    triton: TritonBackend,
    request: service_pb2.ModelInferRequest,
    target: common_pb2.RouteTarget,
    adapters: AdapterSource,
    workflow: str,
    timeout_s: float,
) -> AsyncIterator[service_pb2.ModelInferResponse]:
    await adapters.verify(target, workflow)  # the route's pin, whether Triton holds the adapter or not
    answered = False
    try:
        async for response in triton.stream(request, timeout_s):
            answered = True
            yield response
        return
    except LoraNotCached:
        if answered:
            raise
    loaded = await adapters.load(target, workflow)
    tensors.add_input(request, "lora_weights", loaded.weights)
    tensors.add_input(request, "lora_config", loaded.config)
    async for response in triton.stream(request, timeout_s):
        yield response
