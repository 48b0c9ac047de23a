"""The TensorRT-LLM request interface (cumulus.trtllm.interface) served on top of the scheduler.

Every model is decoupled, like TensorRT-LLM's ``tensorrt_llm`` model, so clients use gRPC
ModelStreamInfer (tritonclient ``start_stream`` / ``async_stream_infer``) for both modes:
``stream=true`` gets one response per text delta, the last one carrying the finish; ``stream=false``
gets one response with the whole text. Either way Triton then sends an empty response flagged
``triton_final_response`` (visible with ``enable_empty_final_response=True``): read until it.
A bad input is refused with InvalidArgument, "<input>: <problem>", which cumulus.trtllm.errors
reads back on the client side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from pytriton.model_config import Tensor

from cumulus.engine.adapter_cache import resolve_adapter
from cumulus.engine.backend import Chunk, GenerationRequest
from cumulus.errors import InvalidArgument
from cumulus.trtllm import interface
from services.inference.scheduler import BatchScheduler

INPUTS = [Tensor(name=s.name, dtype=s.dtype, shape=s.shape, optional=s.optional) for s in interface.INPUTS]
OUTPUTS = [Tensor(name=s.name, dtype=s.dtype, shape=s.shape) for s in interface.OUTPUTS]

Array = npt.NDArray[Any]
InferFn = Callable[[list[Any]], AsyncIterator[list[dict[str, Array]]]]


def parse_request(
    data: Mapping[str, Array], scheduler: BatchScheduler, max_tokens_cap: int
) -> tuple[GenerationRequest, bool]:
    """Validate one Triton request; InvalidArgument names the offending input."""
    rows = data["text_input"].shape[0]
    if rows != 1:
        raise InvalidArgument("text_input", f"one prompt per request, got a batch of {rows}")
    try:
        prompt = _scalar(data, "text_input", b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument("text_input", f"not UTF-8: {exc}") from exc
    if not prompt:
        raise InvalidArgument("text_input", "must not be empty")
    max_tokens = int(_scalar(data, "max_tokens", 0))
    if not 1 <= max_tokens <= max_tokens_cap:
        raise InvalidArgument("max_tokens", f"must be between 1 and {max_tokens_cap}, got {max_tokens}")
    temperature = float(_scalar(data, "temperature", 0.0))
    if not temperature >= 0.0:  # also refuses NaN
        raise InvalidArgument("temperature", f"must be >= 0, got {temperature}")
    top_p = float(_scalar(data, "top_p", 1.0))
    if not 0.0 < top_p <= 1.0:
        raise InvalidArgument("top_p", f"must be in (0, 1], got {top_p}")
    stop = (
        tuple(filter(None, map(_stop_word, data["stop_words"].reshape(-1)))) if "stop_words" in data else ()
    )
    task_id = int(_scalar(data, "lora_task_id", 0)) if "lora_task_id" in data else None
    engine = scheduler.engine
    adapter = resolve_adapter(engine.adapters, task_id, data.get("lora_weights"), data.get("lora_config"))
    prompt_tokens = engine.count_tokens(prompt)
    if prompt_tokens + max_tokens > engine.context_length:
        raise InvalidArgument(
            "text_input",
            f"prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the "
            f"{engine.context_length}-token context of model {scheduler.name}",
        )
    request = GenerationRequest(prompt, max_tokens, temperature, top_p, stop, adapter)
    return request, bool(_scalar(data, "stream", False))


def make_infer_fn(scheduler: BatchScheduler, max_tokens_cap: int) -> InferFn:
    """The PyTriton infer function of one decoupled model."""

    async def infer(requests: list[Any]) -> AsyncIterator[list[dict[str, Array]]]:
        # Triton's batcher is off (server.py), so each call carries exactly one request.
        if len(requests) != 1:
            raise InvalidArgument("text_input", f"expected one request per call, got {len(requests)}")
        # In a thread: a registry adapter is read and sha256-verified on its first request.
        request, stream = await asyncio.to_thread(parse_request, requests[0].data, scheduler, max_tokens_cap)
        text = ""
        async for chunk in scheduler.submit(request):
            if stream:
                yield [_response(chunk.text, chunk)]
            else:
                text += chunk.text
                if chunk.finish_reason is not None:
                    yield [_response(text, chunk)]

    return infer


def _response(text: str, chunk: Chunk) -> dict[str, Array]:
    return {
        "text_output": np.array([[text.encode("utf-8")]], dtype=object),
        "prompt_tokens": np.array([[chunk.prompt_tokens]], dtype=np.int32),
        "completion_tokens": np.array([[chunk.completion_tokens]], dtype=np.int32),
    }


def _scalar(data: Mapping[str, Array], name: str, default: Any) -> Any:
    if name not in data:
        return default
    value = data[name]
    if value.size != 1:
        raise InvalidArgument(name, f"expected one value, got shape {list(value.shape)}")
    return value.reshape(-1)[0]


def _stop_word(value: Any) -> str:
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError as exc:
        raise InvalidArgument("stop_words", f"not UTF-8: {exc}") from exc
