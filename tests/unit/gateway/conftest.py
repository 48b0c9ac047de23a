"""An in-process gateway on a free port with fakes injected (no Kafka, no Triton)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from cumulus.apikeys import ApiKeyStore
from cumulus.config import CumulusConfig, GatewayConfig, PrivacyConfig
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2, gateway_pb2_grpc
from services.gateway.core import GatewayCore
from services.gateway.server import GatewayServer
from tests.unit.gateway.fakes import FakeAdapters, FakePromptSpecs, FakeRenderer, FakeTriton, ListSink


@dataclass(repr=False)
class Harness:
    """A running gateway and what the tests poke at."""

    core: GatewayCore
    server: GatewayServer
    channel: grpc.aio.Channel
    stub: gateway_pb2_grpc.GatewayStub
    triton: FakeTriton
    sink: ListSink
    adapters: FakeAdapters
    key: str
    other_key: str
    prompt_specs: FakePromptSpecs

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def auth(self, key: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key or self.key}"),)

    def route(self, workflow: str, version: int = 1, tenant: str = "acme", **fields: object) -> None:
        """Install a RouteTable for ``workflow`` as if the router had published it."""
        meta = common_pb2.EventMeta(event_id=f"r{version}", tenant=tenant, workflow=workflow)
        assert self.core.book.apply(events_pb2.RouteTable(meta=meta, version=version, **fields))  # type: ignore[arg-type]


def ask(text: str = "hello", **fields: object) -> gateway_pb2.GenerateRequest:
    """A minimal valid GenerateRequest with one user message."""
    return gateway_pb2.GenerateRequest(
        messages=[common_pb2.ChatMessage(role="user", content=text)],
        **fields,  # type: ignore[arg-type]
    )


def adapter(adapter_id: str = "ad-1", task_id: int = 7, model: str = "small") -> common_pb2.RouteTarget:
    return common_pb2.RouteTarget(model=model, adapter_id=adapter_id, lora_task_id=task_id)


def gateway_config(
    tmp_path: Path, keys_file: Path, privacy: PrivacyConfig | None = None, **gateway: object
) -> CumulusConfig:
    settings: dict[str, object] = {"shadow_concurrency": 2, "shadow_timeout_s": 2.0, **gateway}
    return CumulusConfig(
        state_dir=tmp_path,
        gateway=GatewayConfig(api_keys_file=keys_file, **settings),  # type: ignore[arg-type]
        privacy=privacy or PrivacyConfig(),
    )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Harness]:
    async with serving(tmp_path) as harness:
        yield harness


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, privacy: PrivacyConfig | None = None) -> AsyncIterator[Harness]:
    """A gateway with fakes on a free port; tenants acme (``key``) and globex (``other_key``)."""
    keys_file = tmp_path / "api-keys.json"
    store = ApiKeyStore(keys_file)
    key, other_key = store.issue("acme"), store.issue("globex")
    triton, sink, adapters, prompt_specs = FakeTriton(), ListSink(), FakeAdapters(), FakePromptSpecs()
    core = GatewayCore.build(
        gateway_config(tmp_path, keys_file, privacy),
        triton=triton,
        renderer=FakeRenderer(),
        sink=sink,
        adapters=adapters,
        prompt_specs=prompt_specs,
    )
    server = GatewayServer(core)
    port = await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Harness(
            core,
            server,
            channel,
            gateway_pb2_grpc.GatewayStub(channel),
            triton,
            sink,
            adapters,
            key,
            other_key,
            prompt_specs,
        )
    finally:
        await channel.close()
        await server.stop(0)
