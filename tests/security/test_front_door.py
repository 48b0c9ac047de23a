"""The gateway's front doors under attack: TLS, oversized and padded messages, client LoRA tensors,
revoked keys on open streams. Probed from outside with grpc and tritonclient, over mutual TLS."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from cumulus.apikeys import ApiKeyStore, hash_key
from cumulus.kafka import topics
from cumulus.tls import ClientTLS, LocalPKI
from cumulus.trtllm import interface
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2
from services.router.state import read_topic
from tests.integration.stack_process import cli
from tests.security.conftest import SecureStack

PROMPT = "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n"


def ask(text: str = "hello", workflow: str = "", **fields: object) -> gateway_pb2.GenerateRequest:
    return gateway_pb2.GenerateRequest(
        workflow=workflow,
        messages=[common_pb2.ChatMessage(role="user", content=text)],
        params=common_pb2.GenerationParams(max_tokens=2),
        **fields,  # type: ignore[arg-type]
    )


def code_of(stack: SecureStack, tls: ClientTLS | None, plaintext: bool = False) -> grpc.StatusCode:
    channel = grpc.insecure_channel(stack.gateway) if plaintext else stack.channel(tls)
    try:
        from cumulus.v1 import gateway_pb2_grpc

        gateway_pb2_grpc.GatewayStub(channel).Generate(ask(), metadata=stack.auth(), timeout=10)  # type: ignore[no-untyped-call]
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return, attr-defined]
    finally:
        channel.close()


def serving(stack: SecureStack) -> bool:
    with stack.channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_only_clients_with_the_ca_and_a_certificate_get_in(
    secure_stack: SecureStack, tmp_path: object
) -> None:
    stack = secure_stack
    assert code_of(stack, None) == grpc.StatusCode.OK
    assert code_of(stack, None, plaintext=True) == grpc.StatusCode.UNAVAILABLE  # no TLS at all
    assert code_of(stack, ClientTLS(stack.tls.ca_file)) == grpc.StatusCode.UNAVAILABLE  # no certificate
    stranger = LocalPKI(stack.config.state_dir.parent / f"stranger-{uuid.uuid4().hex[:6]}")
    stranger.ensure()
    # A client that trusts another CA (so the gateway's certificate fails) ...
    assert code_of(stack, ClientTLS(stranger.ca_cert, stack.tls.cert_file, stack.tls.key_file)) == (
        grpc.StatusCode.UNAVAILABLE
    )
    # ... and one whose certificate another CA signed.
    assert code_of(stack, ClientTLS(stack.tls.ca_file, stranger.client_cert, stranger.client_key)) == (
        grpc.StatusCode.UNAVAILABLE
    )


def kserve_client(stack: SecureStack) -> grpcclient.InferenceServerClient:
    tls = stack.tls
    return grpcclient.InferenceServerClient(
        stack.gateway,
        ssl=True,
        root_certificates=str(tls.ca_file),
        private_key=str(tls.key_file),
        certificate_chain=str(tls.cert_file),
    )


@pytest.mark.parametrize(
    "tensor",
    [
        {"lora_task_id": 1},  # naming a task id: another tenant's adapter, say
        {"lora_task_id": 1, "lora_weights": [[[0.5] * 8]], "lora_config": [[[0, 0, 2]]]},  # overwriting it
    ],
    ids=["run-another-task", "overwrite-a-task"],
)
def test_lora_tensors_from_a_client_are_invalid_argument(secure_stack: SecureStack, tensor: dict) -> None:
    import numpy as np

    inputs = interface.client_inputs({"text_input": PROMPT, "max_tokens": 2, "stream": False})
    task = grpcclient.InferInput("lora_task_id", [1, 1], "UINT64")
    task.set_data_from_numpy(np.array([[tensor["lora_task_id"]]], dtype=np.uint64))
    inputs.append(task)
    if "lora_weights" in tensor:
        weights = grpcclient.InferInput("lora_weights", [1, 1, 8], "FP16")
        weights.set_data_from_numpy(np.array(tensor["lora_weights"], dtype=np.float16))
        inputs.append(weights)
    client = kserve_client(secure_stack)
    try:
        for key in (secure_stack.key, secure_stack.other_key):
            with pytest.raises(InferenceServerException) as refused:
                client.infer("small", inputs, headers={"authorization": f"Bearer {key}"})
            assert refused.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
            assert refused.value.message().startswith("lora_"), refused.value.message()
        plain = interface.client_inputs({"text_input": PROMPT, "max_tokens": 2, "stream": False})
        client.infer("small", plain, headers={"authorization": f"Bearer {secure_stack.key}"})  # still serves
    finally:
        client.close()


def test_an_8_mib_message_is_resource_exhausted_and_the_gateway_stays_serving(
    secure_stack: SecureStack,
) -> None:
    stub = secure_stack.stub()
    with pytest.raises(grpc.RpcError) as refused:
        stub.Generate(ask("x" * (8 * 1024 * 1024)), metadata=secure_stack.auth(), timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert "larger than max" in (refused.value.details() or "")  # type: ignore[attr-defined]
    # Unauthenticated, it is refused the same way: its size is checked before its key.
    with pytest.raises(grpc.RpcError) as anonymous:
        stub.Generate(ask("x" * (8 * 1024 * 1024)), timeout=30)
    assert anonymous.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert serving(secure_stack)
    assert stub.Generate(ask(), metadata=secure_stack.auth(), timeout=30).text is not None


def test_unknown_fields_never_reach_the_event(secure_stack: SecureStack) -> None:
    request_id = f"padded-{uuid.uuid4().hex[:8]}"
    body = ask(request_id=request_id).SerializeToString()
    padding = b"\xfa\x3e" + _varint(100_000) + b"p" * 100_000  # field 999 (length-delimited), 100 KB
    with secure_stack.channel() as channel:
        generate = channel.unary_unary(
            "/cumulus.v1.Gateway/Generate",
            request_serializer=lambda raw: raw,
            response_deserializer=gateway_pb2.GenerateResponse.FromString,
        )
        reply = generate(body + padding, metadata=secure_stack.auth(), timeout=30)
    assert reply.request_id == request_id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = asyncio.run(read_topic(secure_stack.bootstrap, topics.INFERENCE.name))
        mine = [r for r in records if request_id.encode() in (r.value or b"")]
        if mine:
            break
        time.sleep(0.5)
    assert len(mine) == 1
    assert len(mine[0].value) < 10_000, "the client's unknown field was copied into the event"
    assert b"ppppp" not in mine[0].value
    assert events_pb2.InferenceEvent.FromString(mine[0].value).request_id == request_id


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


async def test_a_revoked_key_ends_its_open_stream_within_seconds(secure_stack: SecureStack) -> None:
    keys = ApiKeyStore(secure_stack.config.api_keys_path)
    key = keys.issue("acme")
    outbox: asyncio.Queue[service_pb2.ModelInferRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[service_pb2.ModelInferRequest]:
        while (item := await outbox.get()) is not None:
            yield item

    def one(n: int) -> service_pb2.ModelInferRequest:
        # Not streamed: each request is answered by exactly one response on the stream.
        inputs = interface.client_inputs({"text_input": PROMPT, "max_tokens": 1, "stream": False})
        request = service_pb2.ModelInferRequest(model_name="live", id=f"rev-{n}")
        for tensor in inputs:
            request.inputs.append(tensor._get_tensor())
            request.raw_input_contents.append(tensor._get_content())
        return request

    async def answer(stream: grpc.aio.StreamStreamCall, n: int) -> grpc.StatusCode:
        await outbox.put(one(n))
        try:
            reply = await asyncio.wait_for(stream.read(), timeout=30)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        if reply is grpc.aio.EOF:
            return await stream.code()
        assert not reply.error_message, reply.error_message
        return grpc.StatusCode.OK

    async with grpc.aio.secure_channel(secure_stack.gateway, secure_stack.tls.credentials()) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stream = stub.ModelStreamInfer(requests(), metadata=(("authorization", f"Bearer {key}"),))
        assert await answer(stream, 0) == grpc.StatusCode.OK
        assert cli(secure_stack.path, "keys", "revoke", hash_key(key)[:12]).returncode == 0
        revoked_at, code, n = time.monotonic(), grpc.StatusCode.OK, 0
        while code == grpc.StatusCode.OK and time.monotonic() - revoked_at < 10:
            n += 1
            code = await answer(stream, n)
            await asyncio.sleep(0.2)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert time.monotonic() - revoked_at < 10
        await outbox.put(None)
