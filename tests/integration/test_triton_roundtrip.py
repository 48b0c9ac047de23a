"""Round trips through the real Triton of services/inference with tritonclient, as the gateway does."""

from __future__ import annotations

import asyncio
import json
import queue
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

pytestmark = pytest.mark.integration

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
INPUTS = {
    "text_input": ("BYTES", [-1, 1]),
    "max_tokens": ("INT32", [-1, 1]),
    "stream": ("BOOL", [-1, 1]),
    "temperature": ("FP32", [-1, 1]),
    "top_p": ("FP32", [-1, 1]),
    "stop_words": ("BYTES", [-1, -1]),
    "lora_task_id": ("UINT64", [-1, 1]),
    "lora_weights": ("FP16", [-1, -1, -1]),
    "lora_config": ("INT32", [-1, -1, 3]),
}
OUTPUTS = {"text_output": "BYTES", "prompt_tokens": "INT32", "completion_tokens": "INT32"}


def _inputs(text: str, max_tokens: int, *, stream: bool, lora_task_id: int | None = None) -> list[Any]:
    values: dict[str, tuple[str, np.ndarray]] = {
        "text_input": ("BYTES", np.array([[text.encode()]], dtype=object)),
        "max_tokens": ("INT32", np.array([[max_tokens]], dtype=np.int32)),
        "stream": ("BOOL", np.array([[stream]])),
    }
    if lora_task_id is not None:
        values["lora_task_id"] = ("UINT64", np.array([[lora_task_id]], dtype=np.uint64))
    tensors = []
    for name, (datatype, array) in values.items():
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


async def _generate(url: str, model: str, text: str, max_tokens: int, *, stream: bool) -> list[Any]:
    """One request on its own ModelStreamInfer stream; the stream ends when the request is done."""

    async def one_request() -> AsyncIterator[dict[str, Any]]:
        yield {"model_name": model, "inputs": _inputs(text, max_tokens, stream=stream)}

    async with aioclient.InferenceServerClient(url) as client:
        responses = []
        async for result, error in client.stream_infer(one_request()):
            assert error is None, error
            responses.append(result)
        return responses


def _text(result: Any) -> str:
    return bytes(result.as_numpy("text_output")[0, 0]).decode()


def _count(result: Any, name: str) -> int:
    return int(result.as_numpy(name)[0, 0])


def test_both_models_are_ready_with_the_tensorrt_llm_interface(
    triton_server: str, triton_http_url: str
) -> None:
    client = grpcclient.InferenceServerClient(triton_server)
    assert client.is_server_ready()
    for model in ("live", "small"):
        assert client.is_model_ready(model)
        metadata = client.get_model_metadata(model, as_json=True)
        assert {i["name"]: (i["datatype"], [int(d) for d in i["shape"]]) for i in metadata["inputs"]} == {
            name: (datatype, shape) for name, (datatype, shape) in INPUTS.items()
        }
        assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == OUTPUTS
        config = client.get_model_config(model, as_json=True)["config"]
        assert config["model_transaction_policy"] == {"decoupled": True}
    # The same through KServe v2 over HTTP: Triton's own endpoints are the health checks.
    with urllib.request.urlopen(f"{triton_http_url}/v2/health/ready") as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{triton_http_url}/v2/models/small") as response:
        assert json.load(response)["name"] == "small"


@pytest.mark.parametrize("model", ["live", "small"])
async def test_stream_and_unary_give_the_same_text(triton_server: str, model: str) -> None:
    unary = await _generate(triton_server, model, PROMPT, 12, stream=False)
    streamed = await _generate(triton_server, model, PROMPT, 12, stream=True)
    assert len(unary) == 1 and len(streamed) > 1
    assert "".join(_text(r) for r in streamed) == _text(unary[0])
    assert _text(unary[0])
    assert _count(unary[0], "completion_tokens") == _count(streamed[-1], "completion_tokens") <= 12
    assert _count(unary[0], "prompt_tokens") == _count(streamed[0], "prompt_tokens") > 10


async def test_max_tokens_is_honoured(triton_server: str) -> None:
    # tiny-llama never picks EOS for this prompt, so it runs to the limit.
    (result,) = await _generate(triton_server, "live", PROMPT, 7, stream=False)
    assert _count(result, "completion_tokens") == 7


async def test_concurrent_requests_are_all_answered(triton_server: str) -> None:
    results = await asyncio.gather(
        *(_generate(triton_server, "small", f"Count to {n}:", 3 + n, stream=n % 2 == 0) for n in range(6))
    )
    assert [sum(1 for _ in r) >= 1 for r in results] == [True] * 6
    assert all(_count(r[-1], "completion_tokens") <= 3 + n for n, r in enumerate(results))


def test_sync_stream_client_sees_one_final_response_per_request(triton_server: str) -> None:
    received: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(triton_server)
    client.start_stream(callback=lambda result, error: received.put((result, error)))
    try:
        client.async_stream_infer("small", _inputs(PROMPT, 8, stream=False), enable_empty_final_response=True)
        responses = []
        while True:
            result, error = received.get(timeout=60)
            assert error is None, error
            responses.append(result)
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream()
    assert len(responses) == 2  # the text, then Triton's empty final response
    assert _text(responses[0])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            _inputs(PROMPT, 4, stream=False, lora_task_id=42),
            "LoRA task 42 not found in cache. Please send LoRA weights with request",
        ),
        (_inputs("", 4, stream=False), "text_input: must not be empty"),
        (_inputs(PROMPT, 0, stream=True), "max_tokens: must be between 1 and 512, got 0"),
    ],
)
def test_refused_requests_come_back_as_triton_errors(
    triton_server: str, inputs: list[Any], message: str
) -> None:
    received: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(triton_server)
    client.start_stream(callback=lambda result, error: received.put((result, error)))
    try:
        client.async_stream_infer("small", inputs)
        result, error = received.get(timeout=60)
    finally:
        client.stop_stream()
    assert result is None
    assert error.message() == message
