"""The KServe v2 drop-in against a real Triton: tritonclient through the gateway, and its errors.

A client that already speaks to Triton points at the gateway unchanged; what it gets back (texts,
metadata, errors naming the tensor) must be what Triton itself would answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from cumulus.kafka import topics
from cumulus.trtllm import interface
from tests.integration.gateway_process import GatewayProcess, session_gateway
from tests.integration.test_gateway import read_events, unique

pytestmark = pytest.mark.integration

PROMPT = "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str, triton_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with session_gateway(tmp_path_factory.mktemp("gateway"), kafka_bootstrap, triton_server, {}) as gw:
        yield gw


def kserve_inputs(prompt: str, max_tokens: int, stream: bool) -> list[grpcclient.InferInput]:
    return interface.client_inputs({"text_input": prompt, "max_tokens": max_tokens, "stream": stream})


async def kserve_text(url: str, headers: dict[str, str] | None, request_id: str, stream: bool) -> str:
    async def one() -> AsyncIterator[dict[str, Any]]:
        yield {"model_name": "live", "inputs": kserve_inputs(PROMPT, 16, stream), "request_id": request_id}

    text = ""
    async with aioclient.InferenceServerClient(url) as client:
        async for result, error in client.stream_infer(one(), headers=headers):
            assert error is None, error
            text += result.as_numpy("text_output").reshape(-1)[0].decode()
    return text


async def test_tritonclient_through_the_gateway_matches_triton_direct(
    gateway: GatewayProcess, triton_server: str, kafka_bootstrap: str
) -> None:
    headers = {"authorization": f"Bearer {gateway.key}"}
    direct = await kserve_text(triton_server, None, "direct", stream=True)
    request_id = unique("kserve")
    assert await kserve_text(gateway.address, headers, request_id, stream=True) == direct
    assert await kserve_text(gateway.address, headers, unique("kserve"), stream=False) == direct
    async with aioclient.InferenceServerClient(gateway.address) as client:
        assert await client.is_server_ready() and await client.is_model_ready("small", headers=headers)
        config = await client.get_model_config("live", headers=headers)
        assert config.config.model_transaction_policy.decoupled
    [event] = await read_events(kafka_bootstrap, topics.INFERENCE, lambda e: e.request_id == request_id, 1)
    assert event.response_text == direct and event.metadata["api"] == "kserve"


async def test_a_clients_bad_tensors_come_back_naming_them(gateway: GatewayProcess) -> None:
    headers = {"authorization": f"Bearer {gateway.key}"}
    unknown_task = kserve_inputs(PROMPT, 4, False) + interface.client_inputs({"lora_task_id": 987654})
    wrong_dtype = grpcclient.InferInput("temperature", [1, 1], "FP64")
    wrong_dtype.set_data_from_numpy(np.array([[0.0]], dtype=np.float64))
    as_double = [*kserve_inputs(PROMPT, 4, False), wrong_dtype]
    async with aioclient.InferenceServerClient(gateway.address) as client:
        with pytest.raises(InferenceServerException) as miss:
            await client.infer("live", unknown_task, headers=headers)
        with pytest.raises(InferenceServerException) as double:
            await client.infer("live", as_double, headers=headers)
    # LoRA inputs are the route's: a client naming a task id (another tenant's, say) is refused.
    assert miss.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert miss.value.message().startswith("lora_task_id: LoRA inputs are set by the gateway's route")
    assert double.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert double.value.message().startswith("temperature: "), double.value.message()
