"""The gateway's gRPC port over TLS and mutual TLS, with certificates from the local PKI."""

from __future__ import annotations

import datetime
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from cumulus.apikeys import ApiKeyStore
from cumulus.config import CumulusConfig
from cumulus.tls import ClientTLS, LocalPKI, gateway_channel
from cumulus.v1 import gateway_pb2_grpc
from services.gateway.core import GatewayCore
from services.gateway.server import GatewayServer
from tests.unit.gateway.conftest import ask, gateway_config
from tests.unit.gateway.fakes import FakeAdapters, FakePromptSpecs, FakeRenderer, FakeTriton, ListSink


@asynccontextmanager
async def serving(config: CumulusConfig) -> AsyncIterator[str]:
    core = GatewayCore.build(
        config,
        triton=FakeTriton(),
        renderer=FakeRenderer(),
        sink=ListSink(),
        adapters=FakeAdapters(),
        prompt_specs=FakePromptSpecs(),
    )
    server = GatewayServer(core)
    port = await server.start("127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def generate(address: str, tls: ClientTLS | None, key: str) -> grpc.StatusCode:
    async with gateway_channel(address, tls) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        try:
            await stub.Generate(ask(), metadata=(("authorization", f"Bearer {key}"),), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture
def key_and_config(tmp_path: Path) -> tuple[str, CumulusConfig]:
    keys = tmp_path / "keys.json"
    return ApiKeyStore(keys).issue("acme"), gateway_config(tmp_path, keys)


async def test_tls_mode_serves_only_clients_that_trust_the_ca(
    key_and_config: tuple[str, CumulusConfig],
) -> None:
    key, config = key_and_config
    pki = config.local_pki
    pki.set_mode("tls")
    assert config.gateway_server_tls is not None and config.gateway_server_tls.client_ca_file is None
    async with serving(config) as address:
        assert await generate(address, config.gateway_client_tls, key) == grpc.StatusCode.OK
        # Plaintext, or TLS trusting another CA: the handshake fails, nothing is served.
        assert await generate(address, None, key) == grpc.StatusCode.UNAVAILABLE
        stranger = LocalPKI(pki.dir.parent / "other-ca")
        stranger.ensure()
        assert await generate(address, ClientTLS(stranger.ca_cert), key) == grpc.StatusCode.UNAVAILABLE


async def test_mtls_mode_needs_a_client_certificate(key_and_config: tuple[str, CumulusConfig]) -> None:
    key, config = key_and_config
    config.local_pki.set_mode("mtls")
    client = config.gateway_client_tls
    assert client is not None
    async with serving(config) as address:
        assert await generate(address, client, key) == grpc.StatusCode.OK
        assert await generate(address, ClientTLS(client.ca_file), key) == grpc.StatusCode.UNAVAILABLE


def test_the_local_pki_is_private_and_names_the_gateway(tmp_path: Path) -> None:
    pki = LocalPKI(tmp_path / "tls")
    pki.ensure(("localhost", "127.0.0.1", "gw.internal"))
    for secret in (pki.ca_key, pki.server_key, pki.client_key):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gw.internal" in names.get_values_for_type(x509.DNSName)
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=300)
    before = pki.server_cert.read_bytes()
    pki.ensure(("localhost", "127.0.0.1", "gw.internal"))
    assert pki.server_cert.read_bytes() == before  # nothing re-issued while valid
    pki.ensure(("localhost", "other.internal"))
    assert pki.server_cert.read_bytes() != before  # a new name: re-issued


def test_a_certificate_without_its_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tls_cert_file and gateway\.tls_key_file"):
        CumulusConfig(state_dir=tmp_path, gateway={"tls_cert_file": tmp_path / "c.pem"})  # type: ignore[arg-type]


def test_a_renewed_ca_reissues_every_leaf_it_did_not_sign(tmp_path: Path) -> None:
    pki = LocalPKI(tmp_path / "tls")
    pki.ensure()
    peer, _ = pki.issue_peer("kafka-broker", ("127.0.0.1",))
    before = {path: path.read_bytes() for path in (pki.server_cert, pki.client_cert, peer)}
    pki.ca_cert.unlink()  # as if it had expired: a new CA is made
    pki.ensure()
    pki.issue_peer("kafka-broker", ("127.0.0.1",))
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    for path, old in before.items():
        assert path.read_bytes() != old, path.name
        x509.load_pem_x509_certificate(path.read_bytes()).verify_directly_issued_by(ca)
