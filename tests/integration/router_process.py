"""The router as a real process (``python -m services.router``), and the events tests play to it.

A test plays the trainer and the judge by publishing adapter events and verdicts, reads what the
router holds from ``GET /api/v1/rollouts`` and what the gateway would see from cumulus.routes.v1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from cumulus.kafka import codec, topics
from cumulus.operators import ensure_dev_operator_token
from cumulus.v1 import events_pb2
from ops.stack.probes import http_json
from services.router.state import read_topic
from tests.integration.gateway_process import REPO, free_ports

MIN_SAMPLES = 20
STEP_VERDICTS = 50
"""All passing: enough for the test to show non-inferiority at the default margin (it needs 43)."""
TENANT = "dev"


@dataclass
class RouterProcess:
    env: dict[str, str]
    log_path: Path
    health_port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.router"], cwd=REPO, env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.rollouts() is not None:
                return
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError("router did not serve /api/v1/rollouts:\n" + self.log_path.read_text()[-3000:])

    def rollouts(self) -> dict[tuple[str, str], dict[str, Any]] | None:
        """The router's rollouts by (tenant, workflow)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        status, body = http_json(f"http://127.0.0.1:{self.health_port}/api/v1/rollouts", headers=headers)
        if status != 200 or not isinstance(body, dict):
            return None
        return {(row["tenant"], row["workflow"]): row for row in body["rollouts"]}

    @property
    def token(self) -> str:
        return ensure_dev_operator_token(Path(self.env["CUMULUS_STATE_DIR"]))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def running_router(
    tmp_path: Path, kafka_bootstrap: str, settings: dict[str, str] | None = None
) -> Iterator[RouterProcess]:
    """A started router on its own port, state and consumer group; ``settings`` add env variables."""
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "CUMULUS_STATE_DIR": str(tmp_path / "state"),
        "CUMULUS_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CUMULUS_ROUTER__HEALTH_PORT": str(port),
        "CUMULUS_ROUTER__GROUP_ID": f"router-{uuid.uuid4().hex[:8]}",
        "CUMULUS_ROUTER__MIN_SAMPLES_PER_STEP": str(MIN_SAMPLES),
        # Shared with the CLI this test runs (cli_env): the router acts only on commands it signed.
        "CUMULUS_ROUTER__COMMAND_KEY_FILE": str(tmp_path / "command-key"),
        **(settings or {}),
    }
    process = RouterProcess(env, tmp_path / "router.log", port)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def router(tmp_path: Path, kafka_bootstrap: str) -> Iterator[RouterProcess]:
    with running_router(tmp_path, kafka_bootstrap) as process:
        yield process


@pytest.fixture
def cli_env(router: RouterProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `cumulus rollout` CLI, run in this process, talks to this test's broker and router."""
    for name in (
        "CUMULUS_STATE_DIR",  # where the operator tokens are: commands carry the token's identity
        "CUMULUS_KAFKA__BOOTSTRAP_SERVERS",
        "CUMULUS_ROUTER__HEALTH_PORT",
        "CUMULUS_ROUTER__COMMAND_KEY_FILE",
    ):
        monkeypatch.setenv(name, router.env[name])
    monkeypatch.setenv("CUMULUS_OPERATOR_TOKEN", router.token)


async def publish(bootstrap: str, events: list[tuple[topics.TopicSpec, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for spec, event in events:
            await producer.send(
                spec.name,
                codec.encode_event(event),
                key=codec.encode_key(event.meta.tenant, event.meta.workflow),
            )
        await producer.flush()
    finally:
        await producer.stop()


def adapter_ready(workflow: str, adapter_id: str, tenant: str = TENANT) -> events_pb2.AdapterEvent:
    return events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant=tenant, workflow=workflow, producer="trainer"),
        adapter_id=adapter_id,
        status=events_pb2.ADAPTER_STATUS_READY,
        gate_passed=True,
        lora_task_id=7,
        version="1",
        manifest_sha256="ab" * 32,  # a route pins it; the router never reads the artifact
    )


def verdicts(
    workflow: str, adapter_id: str, n: int, *, passed: bool = True, tenant: str = TENANT, **fields: Any
) -> list[tuple[Any, Any]]:
    """``n`` verdicts of the judge; ``fields`` set more Verdict fields (reference, request_id ...)."""
    return [
        (
            topics.VERDICTS,
            events_pb2.Verdict(
                meta=codec.new_meta(tenant=tenant, workflow=workflow, producer="judge"),
                verdict_id=uuid.uuid4().hex,
                adapter_id=adapter_id,
                grader="label",
                passed=passed,
                score=float(passed),
                live_latency_ms=80.0,
                candidate_latency_ms=30.0,
                **fields,
            ),
        )
        for _ in range(n)
    ]


def wait_for(
    router: RouterProcess, workflow: str, state: str, step: int, timeout_s: float = 60, tenant: str = TENANT
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    row: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        row = (router.rollouts() or {}).get((tenant, workflow))
        if row is not None and row["state"] == state and row["step"] == step:
            return row
        time.sleep(0.2)
    raise AssertionError(
        f"{tenant}/{workflow} never reached {state} step {step}; last {row}\n"
        + router.log_path.read_text()[-3000:]
    )


async def newest_table(
    bootstrap: str,
    workflow: str,
    until: Callable[[events_pb2.RouteTable], bool] | None = None,
    timeout_s: float = 30,
    tenant: str = TENANT,
) -> events_pb2.RouteTable:
    """The newest route table of ``tenant``'s ``workflow``; with ``until``, the first newest one it accepts.

    The router reports a decision as soon as it is made; the table reaches Kafka a moment later.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        tables = [
            codec.decode_as(events_pb2.RouteTable, r.value)
            for r in await read_topic(bootstrap, topics.ROUTES.name)
            if r.key == codec.encode_key(tenant, workflow)
        ]
        newest = max(tables, key=lambda t: t.version) if tables else None
        if newest is not None and (until is None or until(newest)):
            return newest
        assert time.monotonic() < deadline, f"no accepted route table for {workflow}; newest: {newest}"
        await asyncio.sleep(0.2)


def weights(table: events_pb2.RouteTable) -> list[float]:
    return [w.weight for w in table.canary]


async def ramp_to(
    router: RouterProcess, bootstrap: str, workflow: str, adapter_id: str, step: int, over: str = ""
) -> dict[str, Any]:
    """Announce ``adapter_id`` ready, then pass ``step`` canary steps on verdicts; the router's row there.

    ``step`` 0 stops at the shadow stage, before any verdict. ``over``: the promoted version it is
    rolled out over, which the step's verdicts are graded against (else live).
    """
    against = {"reference": "incumbent", "reference_adapter_id": over} if over else {}
    await publish(bootstrap, [(topics.ADAPTERS, adapter_ready(workflow, adapter_id))])
    row = await asyncio.to_thread(wait_for, router, workflow, "shadow", 0)
    for canary_step in range(1, step + 1):
        await publish(bootstrap, verdicts(workflow, adapter_id, STEP_VERDICTS, **against))
        row = await asyncio.to_thread(wait_for, router, workflow, "canary", canary_step)
    return row
