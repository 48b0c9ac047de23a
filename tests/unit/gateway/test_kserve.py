"""The KServe v2 drop-in, driven by tritonclient exactly as a Triton client would."""

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from cumulus.kafka import topics
from cumulus.v1 import common_pb2, events_pb2
from tests.unit.gateway.conftest import Harness, adapter


def inputs(prompt: str, max_tokens: int = 32, stream: bool = False) -> list[grpcclient.InferInput]:
    """The TensorRT-LLM interface's inputs, as any tritonclient user builds them."""
    arrays = {
        "text_input": np.array([[prompt.encode()]], dtype=object),
        "max_tokens": np.array([[max_tokens]], dtype=np.int32),
        "stream": np.array([[stream]], dtype=bool),
    }
    tensors = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


async def stream_texts(
    client: aioclient.InferenceServerClient, requests: list[dict], headers: dict[str, str]
) -> dict[str, str]:
    async def feed() -> AsyncIterator[dict]:
        for request in requests:
            yield request

    texts: dict[str, str] = {r["request_id"]: "" for r in requests}
    async for result, error in client.stream_infer(feed(), headers=headers):
        assert error is None, error
        response = result.get_response()
        texts[response.id] += result.as_numpy("text_output").reshape(-1)[0].decode()
    return texts


@pytest.fixture
async def client(gateway: Harness) -> AsyncIterator[aioclient.InferenceServerClient]:
    async with aioclient.InferenceServerClient(gateway.address) as triton_client:
        yield triton_client


def headers(gateway: Harness, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.key}", **extra}


async def test_liveness_and_readiness_are_open_and_everything_else_needs_a_key(
    gateway: Harness, client: aioclient.InferenceServerClient
) -> None:
    assert await client.is_server_live() and await client.is_server_ready()  # load balancers' probes
    for unauthenticated in (
        client.is_model_ready("live"),
        client.get_model_metadata("small"),
        client.get_model_config("live"),
        client.get_server_metadata(),
        client.infer("live", inputs("hi")),
    ):
        with pytest.raises(InferenceServerException, match=r"UNAUTHENTICATED.*missing API key"):
            await unauthenticated
    key = headers(gateway)
    assert await client.is_model_ready("live", headers=key)
    assert (await client.get_model_metadata("small", headers=key)).name == "small"
    assert (await client.get_model_config("live", headers=key)).config.name == "live"
    with pytest.raises(InferenceServerException, match="unknown model"):
        await client.get_model_metadata("nope", headers=key)
    assert not gateway.triton.requests


async def test_streamed_requests_are_multiplexed_and_captured(
    gateway: Harness, client: aioclient.InferenceServerClient
) -> None:
    requests = [
        {"model_name": "live", "inputs": inputs(f"prompt number {i}", stream=True), "request_id": f"k{i}"}
        for i in range(4)
    ]
    texts = await stream_texts(client, requests, headers(gateway, **{"x-cumulus-workflow": "raw"}))
    assert texts == {f"k{i}": f"live says: prompt number {i}" for i in range(4)}
    events = gateway.sink.of(topics.INFERENCE)
    assert sorted(e.request_id for e in events) == ["k0", "k1", "k2", "k3"]
    assert {e.meta.workflow for e in events} == {"raw"} and events[0].metadata["api"] == "kserve"
    assert events[0].prompt_text.startswith("prompt number") and events[0].params.max_tokens == 32


async def test_unary_infer_works_for_decoupled_models(
    gateway: Harness, client: aioclient.InferenceServerClient
) -> None:
    result = await client.infer(
        "live", inputs("a b c", stream=True), request_id="u1", headers=headers(gateway)
    )
    assert result.as_numpy("text_output").reshape(-1)[0] == b"live says: a b c"
    assert result.get_response().id == "u1" and result.as_numpy("completion_tokens").reshape(-1)[0] == 5


async def test_inference_needs_a_key(gateway: Harness, client: aioclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="missing API key"):
        await client.infer("live", inputs("x"))
    assert not gateway.triton.requests


async def test_bad_request_on_a_stream_answers_with_an_error_and_the_stream_goes_on(
    gateway: Harness, client: aioclient.InferenceServerClient
) -> None:
    async def feed() -> AsyncIterator[dict]:
        yield {"model_name": "live", "inputs": inputs("x", max_tokens=0), "request_id": "bad"}
        yield {"model_name": "live", "inputs": inputs("fine"), "request_id": "good"}

    outcomes = []
    async for result, error in client.stream_infer(feed(), headers=headers(gateway)):
        outcomes.append(str(error) if error else result.get_response().id)
    assert "good" in outcomes and any("INVALID_ARGUMENT: max_tokens" in o for o in outcomes)


async def test_canary_on_the_same_model_applies_and_shadow_pairs_are_published(
    gateway: Harness, client: aioclient.InferenceServerClient
) -> None:
    gateway.route(
        "raw",
        canary=[events_pb2.WeightedTarget(target=adapter("ad-1"), weight=1.0)],
        shadow=adapter("ad-2", task_id=9),
        shadow_rate=1.0,
    )
    extra = {"x-cumulus-workflow": "raw"}
    result = await client.infer("small", inputs("q"), request_id="c1", headers=headers(gateway, **extra))
    assert result.as_numpy("text_output").reshape(-1)[0] == b"small says: q"
    [event] = gateway.sink.of(topics.INFERENCE)
    assert event.route.mode == common_pb2.ROUTE_MODE_PROMOTED and event.route.target.adapter_id == "ad-1"
    for _ in range(100):
        if gateway.sink.of(topics.SHADOW):
            break
        await asyncio.sleep(0.01)
    [pair] = gateway.sink.of(topics.SHADOW)
    assert pair.adapter_id == "ad-2" and pair.messages[0].content == "q" and pair.candidate.text
    # A prompt rendered for `live` never goes to an adapter on `small`.
    await client.infer("live", inputs("q"), request_id="c2", headers=headers(gateway, **extra))
    assert gateway.sink.of(topics.INFERENCE)[-1].route.target == common_pb2.RouteTarget(model="live")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"lora_task_id": np.array([[9999]], np.uint64)}, "lora_task_id"),
        (
            {"lora_weights": np.zeros((1, 1, 8), np.float16), "lora_config": np.zeros((1, 1, 3), np.int32)},
            "lora_weights",
        ),
        ({"end_id": np.array([[2]], np.int32)}, "end_id"),
    ],
)
async def test_lora_and_unknown_inputs_from_a_client_are_refused_naming_the_tensor(
    gateway: Harness, client: aioclient.InferenceServerClient, extra: dict, named: str
) -> None:
    sent = inputs("hello there")
    for name, array in extra.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        sent.append(tensor)
    with pytest.raises(InferenceServerException) as unary:
        await client.infer("live", sent, headers=headers(gateway))
    assert unary.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert unary.value.message().startswith(f"{named}: ")

    async def one() -> AsyncIterator[dict]:
        yield {"model_name": "live", "inputs": sent, "request_id": "refused"}

    errors = [error async for _, error in client.stream_infer(one(), headers=headers(gateway)) if error]
    assert [e.message() for e in errors] == [f"INVALID_ARGUMENT: {unary.value.message()}"]
    assert not gateway.triton.requests and not gateway.sink.of(topics.INFERENCE)


async def test_unknown_request_parameters_are_refused_naming_them(
    gateway: Harness, client: aioclient.InferenceServerClient
) -> None:
    with pytest.raises(InferenceServerException) as refused:
        await client.infer("live", inputs("hi"), headers=headers(gateway), parameters={"lora_dir": "/tmp"})
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert refused.value.message().startswith("lora_dir: unknown request parameter")
    ok = await client.infer(
        "live", inputs("hi"), headers=headers(gateway), parameters={"cumulus_workflow": "named"}
    )
    assert ok.as_numpy("text_output") is not None
