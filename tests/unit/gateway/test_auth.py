"""API keys -> tenants, and UNAUTHENTICATED for everything else."""

from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from cumulus.apikeys import ApiKeyStore, ensure_dev_key
from cumulus.errors import Unauthenticated
from cumulus.kafka import topics
from cumulus.trtllm import tensors
from cumulus.v1 import gateway_pb2
from services.gateway.auth import Authenticator, bearer_key
from tests.unit.gateway.conftest import Harness, ask


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((("authorization", "Bearer k1"),), "k1"),
        ((("Authorization", "bearer  k2 "),), "k2"),
        ((("x-other", "Bearer no"), ("authorization", "Bearer k3")), "k3"),
        ((("authorization", b"Bearer k4"),), "k4"),
        ((("authorization", "Basic abc"),), None),
        ((("authorization", "Bearer "),), None),
        ((), None),
        (None, None),
    ],
)
def test_bearer_key(metadata: tuple[tuple[str, str], ...] | None, expected: str | None) -> None:
    assert bearer_key(metadata) == expected


def test_keys_map_to_tenants_and_new_keys_work_at_once(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    auth = Authenticator(tmp_path / "keys.json")
    with pytest.raises(Unauthenticated, match="unknown API key"):
        auth.tenant_for_metadata((("authorization", "Bearer cmk_nope"),))
    key = store.issue("acme")
    assert auth.tenant_for_metadata((("authorization", f"Bearer {key}"),)) == "acme"
    later = store.issue("globex")  # the file changed: the cache must not hide the new key
    assert auth.tenant_for_metadata((("authorization", f"Bearer {later}"),)) == "globex"
    with pytest.raises(Unauthenticated, match="missing API key"):
        auth.tenant_for_metadata(())


async def test_missing_or_wrong_key_is_unauthenticated(gateway: Harness) -> None:
    for metadata in ((), gateway.auth("cmk_wrong")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gateway.stub.Generate(ask(), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not gateway.sink.events and not gateway.triton.requests


async def test_each_tenant_is_recorded_as_itself(gateway: Harness) -> None:
    await gateway.stub.Generate(ask(), metadata=gateway.auth(gateway.other_key))
    assert gateway.sink.events[0][1].meta.tenant == "globex"


def _stream_request(request_id: str) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="live", id=request_id)
    tensors.add_bytes_input(request, "text_input", [b"hello there"])
    tensors.add_input(request, "max_tokens", np.array([[4]], dtype=np.int32))
    return request


async def test_an_unauthenticated_stream_is_refused_before_a_request_is_read(gateway: Harness) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(gateway.channel)
    call = stub.ModelStreamInfer()  # opened, nothing sent: the refusal needs no request
    assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing API key" in (await call.details() or "")
    assert not gateway.triton.requests and not gateway.sink.events


async def test_a_revoked_key_ends_its_open_stream_at_the_next_request(gateway: Harness) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(gateway.channel)
    call = stub.ModelStreamInfer(metadata=gateway.auth())
    await call.write(_stream_request("before"))
    first = await call.read()
    assert first.infer_response.id == "before" and not first.error_message
    assert ApiKeyStore(gateway.core.config.gateway.api_keys_file).revoke(gateway.key)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.write(_stream_request("after"))
        while (reply := await call.read()) is not grpc.aio.EOF:
            assert reply.infer_response.id != "after"
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [r.id for r in gateway.triton.requests] == ["before"]
    with pytest.raises(grpc.aio.AioRpcError) as again:  # and a new call with it is refused
        await gateway.stub.Generate(ask(), metadata=gateway.auth())
    assert again.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_oversized_message_is_refused_unread_and_the_gateway_serves_on(gateway: Harness) -> None:
    limit = gateway.core.config.gateway.max_message_bytes
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.Generate(ask("x" * (limit + 1)), metadata=gateway.auth())
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (err.value.details() or "")
    assert not gateway.triton.requests and not gateway.sink.events
    reply = await gateway.stub.Generate(ask("small"), metadata=gateway.auth())
    assert reply.text


def test_key_files_are_private_from_their_first_byte(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    key = store.issue("acme")
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    assert ensure_dev_key(tmp_path) and (tmp_path / "dev-api-key").stat().st_mode & 0o777 == 0o600
    assert store.revoke(key) and not store.revoke(key) and store.tenant_for(key) is None


async def test_unknown_fields_never_reach_the_captured_event(gateway: Harness) -> None:
    unknown = b"\xfa\x3e\x80\x08" + b"z" * 1024  # field 1007, 1 KiB, in the request and a message
    request = gateway_pb2.GenerateRequest()
    request.MergeFromString(ask("hi").SerializeToString() + unknown)
    request.messages[0].MergeFromString(unknown)
    assert b"z" * 64 in request.messages[0].SerializeToString()
    await gateway.stub.Generate(request, metadata=gateway.auth())
    event = gateway.sink.of(topics.INFERENCE)[0]
    assert event.messages[0].content == "hi" and b"z" * 64 not in event.SerializeToString()
