"""TritonClient over a real gRPC server speaking KServe v2 like Triton: many requests share streams."""

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from cumulus.errors import NotReady
from cumulus.trtllm import interface, tensors
from cumulus.trtllm.errors import DeadlineExceeded, LoraNotCached
from services.gateway.triton import TritonClient, build_request
from services.gateway.validation import Sampling

SAMPLING = Sampling(max_tokens=8, temperature=0.0, top_p=1.0, stop=())


class StreamingTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Answers each streamed request on its own schedule, as Triton does (ids echoed, errors included)."""

    def __init__(self) -> None:
        self.streams = 0

    async def ModelStreamInfer(self, request_iterator, context):  # type: ignore[no-untyped-def]
        self.streams += 1
        writing = asyncio.Lock()
        tasks = []

        async def answer(request: service_pb2.ModelInferRequest) -> None:
            prompt = tensors.input_text(request, "text_input") or ""
            if prompt.startswith("sleep"):
                await asyncio.sleep(float(prompt.split()[1]))
            if prompt == "die":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "triton restarting")
            async with writing:
                if prompt == "miss":
                    error = "LoRA task 7 not found in cache. Please send LoRA weights with request"
                    reply = service_pb2.ModelInferResponse(id=request.id)
                    await context.write(
                        service_pb2.ModelStreamInferResponse(error_message=error, infer_response=reply)
                    )
                    return
                for word in prompt.split():
                    delta = tensors.Delta(word, 1, 1)
                    response = tensors.make_response(request.model_name, request.id, delta)
                    await context.write(service_pb2.ModelStreamInferResponse(infer_response=response))
                final = service_pb2.ModelInferResponse(id=request.id)
                final.parameters[interface.FINAL_FLAG].bool_param = True
                await context.write(service_pb2.ModelStreamInferResponse(infer_response=final))

        try:
            while (request := await context.read()) is not grpc.aio.EOF:
                tasks.append(asyncio.create_task(answer(request)))
        finally:  # also after an abort: every answer's outcome is collected
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def triton() -> AsyncIterator[tuple[TritonClient, StreamingTriton]]:
    server = grpc.aio.server()
    fake = StreamingTriton()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = TritonClient(f"127.0.0.1:{port}", lanes=2)
    try:
        yield client, fake
    finally:
        await client.close()
        await server.stop(0)


async def text_of(client: TritonClient, prompt: str, request_id: str = "", timeout_s: float = 5.0) -> str:
    request = build_request("live", prompt, SAMPLING, stream=True, request_id=request_id)
    text = ""
    async for response in client.stream(request, timeout_s):
        assert response.id == request_id  # the caller's id, not the wire id
        delta = tensors.output_delta(response)
        text += delta.text if delta else ""
    return text


async def test_concurrent_requests_share_two_streams_and_get_their_own_answers(
    triton: tuple[TritonClient, StreamingTriton],
) -> None:
    client, fake = triton
    prompts = [f"sleep {0.05 * (i % 3)} answer {i}" for i in range(30)]
    texts = await asyncio.gather(
        *(text_of(client, p, request_id=f"id-{i % 4}") for i, p in enumerate(prompts))
    )
    assert texts == [p.replace(" ", "") for p in prompts]
    assert fake.streams == 2


async def test_error_reply_reaches_only_its_request(triton: tuple[TritonClient, StreamingTriton]) -> None:
    client, _ = triton
    ok, missed = await asyncio.gather(text_of(client, "a b"), text_of(client, "miss"), return_exceptions=True)
    assert ok == "ab" and isinstance(missed, LoraNotCached)


async def test_deadline(triton: tuple[TritonClient, StreamingTriton]) -> None:
    client, _ = triton
    with pytest.raises(DeadlineExceeded):
        await text_of(client, "sleep 1 late", timeout_s=0.1)
    assert await text_of(client, "still fine") == "stillfine"


async def test_broken_stream_fails_its_requests_and_is_replaced(
    triton: tuple[TritonClient, StreamingTriton],
) -> None:
    client, fake = triton
    waiting = asyncio.create_task(text_of(client, "sleep 0.5 never"))  # lane 0
    await asyncio.sleep(0.05)
    assert await text_of(client, "other lane") == "otherlane"  # lane 1
    with pytest.raises(NotReady, match="triton restarting"):
        await text_of(client, "die")  # lane 0 again: its stream is aborted
    with pytest.raises(NotReady):
        await waiting
    assert [await text_of(client, "back again") for _ in range(2)] == ["backagain"] * 2
    assert fake.streams == 3  # lane 0 reopened, lane 1 kept


async def test_stream_per_request_mode(triton: tuple[TritonClient, StreamingTriton]) -> None:
    shared, fake = triton
    alone = TritonClient(shared.url, lanes=0)
    try:
        texts = await asyncio.gather(*(text_of(alone, f"answer {i}", request_id=str(i)) for i in range(5)))
        assert texts == [f"answer{i}" for i in range(5)] and fake.streams == 5
        with pytest.raises(LoraNotCached):
            await text_of(alone, "miss")
        with pytest.raises(DeadlineExceeded):
            await text_of(alone, "sleep 1 late", timeout_s=0.1)
    finally:
        await alone.close()
