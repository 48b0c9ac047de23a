"""One whole local stack for the adversarial suite, started as a user would: `cumulus up --mtls --secure`.

Real Kafka, Triton (tiny models), chDB and every service as processes, on free ports with their
own state; the gateway serves mutual TLS from the stack's local CA and Kafka speaks SASL_SSL with
one principal per service and ACLs. Every test probes it from outside, as an attacker or a
careless client would: over the network, on Kafka directly (as one of the principals, as a
compromised service would), or through the HTTP APIs.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer

from cumulus.apikeys import ApiKeyStore
from cumulus.config import CumulusConfig, load_config
from cumulus.kafka import codec, topics
from cumulus.kafka.security import KafkaSecurity, configure, security_for
from cumulus.operators import ensure_dev_operator_token
from cumulus.tls import ClientTLS
from cumulus.v1 import gateway_pb2_grpc
from services.router.state import read_topic
from tests.integration.stack_process import cli, stack_config_file


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/security/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@dataclass
class SecureStack:
    path: Path
    """The stack's cumulus.yaml (for `cli`)."""
    config: CumulusConfig
    key: str
    """An API key of tenant ``acme``."""
    other_key: str
    """An API key of tenant ``globex``."""
    token: str
    """The stack's admin operator token."""

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.config.gateway.grpc_port}"

    @property
    def tls(self) -> ClientTLS:
        tls = self.config.gateway_client_tls
        assert tls is not None, "the suite's stack runs with --mtls"
        return tls

    @property
    def bootstrap(self) -> str:
        return self.config.kafka.bootstrap_servers

    def channel(self, tls: ClientTLS | None = None) -> grpc.Channel:
        """A blocking channel to the gateway (mutual TLS with the stack's client certificate)."""
        return grpc.secure_channel(self.gateway, (tls or self.tls).credentials())

    def stub(self) -> gateway_pb2_grpc.GatewayStub:
        return gateway_pb2_grpc.GatewayStub(self.channel())  # type: ignore[no-untyped-call]

    def auth(self, key: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key or self.key}"),)

    def http(
        self,
        service: str,
        path: str,
        token: str | None = None,
        method: str = "GET",
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """(status, JSON body or text) of one call to a service's HTTP API."""
        port = getattr(self.config, service).health_port
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def pid(self, name: str) -> int:
        return int(json.loads((self.config.state_dir / "run" / f"{name}.json").read_text())["pid"])

    def rollouts(self) -> list[dict[str, Any]]:
        status, body = self.http("router", "/api/v1/rollouts", self.token)
        assert status == 200, body
        return list(body["rollouts"])

    def rollout(self, workflow: str, until: Any = None, timeout_s: float = 60) -> dict[str, Any]:
        """The router's rollout of ``workflow`` (tenant acme), once ``until(row)`` holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = [r for r in self.rollouts() if r["workflow"] == workflow and r["tenant"] == "acme"]
            if rows and (until is None or until(rows[0])):
                return rows[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"rollout of {workflow}: {rows}")
            time.sleep(0.5)

    def requests_of(self, workflow: str, tenant: str = "acme") -> int:
        status, body = self.http("collector", f"/api/v1/workflows?tenant={tenant}", self.token)
        assert status == 200, body
        return sum(int(w["requests"]) for w in body["workflows"] if w["workflow"] == workflow)

    def wait_requests(self, workflow: str, expected: int, tenant: str = "acme", timeout_s: float = 60) -> int:
        """The collector's count of ``workflow`` once it reaches ``expected`` (or at the deadline)."""
        deadline, seen = time.monotonic() + timeout_s, -1
        while time.monotonic() < deadline:
            seen = self.requests_of(workflow, tenant)
            if seen >= expected:
                time.sleep(2.0)  # a duplicate would land right after: look once more
                return self.requests_of(workflow, tenant)
            time.sleep(0.5)
        return seen


Records = list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]


async def produce(bootstrap: str, topic: str, records: Records, principal: str = "cli") -> None:
    """Write raw records to a topic as ``principal`` (kcat -P with that service's credentials)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", **as_principal(principal).client_kwargs()
    )
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def produce_events(bootstrap: str, spec: topics.TopicSpec, events: list[Any], principal: str) -> None:
    records: Records = [
        (codec.encode_key(e.meta.tenant, e.meta.workflow), codec.encode_event(e), []) for e in events
    ]
    asyncio.run(produce(bootstrap, spec.name, records, principal))


_CONFIG: list[CumulusConfig] = []


def as_principal(principal: str) -> KafkaSecurity:
    """How ``principal`` logs in to the suite's broker (its password from the stack's state dir)."""
    return security_for(_CONFIG[0], principal)


def dead_letters(bootstrap: str, needle: bytes, count: int = 1, timeout_s: float = 60) -> list[Any]:
    """The dead letters whose record holds ``needle`` (an event id), once ``count`` are there."""
    from cumulus.v1 import events_pb2

    deadline = time.monotonic() + timeout_s
    found: list[Any] = []
    while time.monotonic() < deadline:
        found = [
            events_pb2.DeadLetter.FromString(r.value)
            for r in asyncio.run(read_topic(bootstrap, topics.DEADLETTER.name))
            if r.value and needle in r.value
        ]
        if len(found) >= count:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{len(found)} dead letters hold {needle!r}, expected {count}")


@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    for path in stack_config_file(tmp_path_factory.mktemp("secure")):
        up = cli(path, "up", "--mtls", "--secure", timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        config = load_config(path, env={})
        _CONFIG[:] = [config]
        # This process reads topics as the operators' tooling does: principal `cli`.
        configure(security_for(config, "cli"))
        keys = ApiKeyStore(config.api_keys_path)
        yield SecureStack(
            path,
            config,
            keys.issue("acme"),
            keys.issue("globex"),
            ensure_dev_operator_token(config.state_dir),
        )
        down = cli(path, "down", timeout=180)
        configure(KafkaSecurity())
        assert down.returncode == 0, down.stderr
