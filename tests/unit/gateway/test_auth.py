"""API keys -> tenants, and UNAUTHENTICATED for everything else."""

from pathlib import Path

import grpc
import pytest

from cumulus.apikeys import ApiKeyStore
from cumulus.errors import Unauthenticated
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
