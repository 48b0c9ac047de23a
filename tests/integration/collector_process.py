"""A real collector (``python -m services.collector``) as a subprocess, and events to feed it.

For the integration tests and the benches (bench/ingest.py, bench/soak_collector.py). The
collector gets its own state dir (so its own chDB directory and artifact store), a free health
port (which also serves the read API) and, by default, its own consumer group; everything else
comes from ``settings`` (extra ``CUMULUS_*`` variables). ``kill()`` is ``kill -9`` of the
process; ``stop()`` is SIGTERM and returns the exit code after the clean shutdown.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from cumulus.kafka import codec
from cumulus.operators import ensure_dev_operator_token
from cumulus.v1 import common_pb2, events_pb2
from services.collector.rows import CAPTURES
from tests.integration.kafka_fixtures import _free_ports

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass
class CollectorProcess:
    """One collector process; ``start`` may be called again after ``kill`` or ``stop``."""

    state_dir: Path
    kafka_bootstrap: str
    settings: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=lambda: _free_ports(1)[0])
    group_id: str = field(default_factory=lambda: f"collector-{uuid.uuid4().hex[:8]}")
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "collector.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULUS_")}
        env.update(
            CUMULUS_STATE_DIR=str(self.state_dir),
            CUMULUS_KAFKA__BOOTSTRAP_SERVERS=self.kafka_bootstrap,
            CUMULUS_COLLECTOR__HEALTH_PORT=str(self.port),
            CUMULUS_COLLECTOR__CAPTURE__GROUP_ID=self.group_id,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.settings)
        return env

    def start(self, *, wait: bool = True) -> None:
        """Launch the collector; with ``wait``, return once /readyz says ready (partitions assigned)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.collector"],
                cwd=REPO,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"collector exited with {self.process.returncode}:\n{self.log_tail()}")
            status, _ = self.get("/readyz", timeout_s=2.0)
            if status == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"collector not ready after {timeout_s}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, chDB not closed."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait for the clean shutdown; returns the exit code (SIGKILL after the timeout)."""
        if self.process is None:
            return 0
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise RuntimeError(f"collector ignored SIGTERM for {timeout_s}s:\n{self.log_tail()}") from None
        self.process = None
        return code

    authorized: bool = True
    """Send the state dir's operator token (False: call the API as an outsider)."""

    def request(self, method: str, path: str, body: Any = None, timeout_s: float = 30.0) -> tuple[int, Any]:
        """One HTTP call to the collector; (status, parsed JSON) — (0, None) when nothing answers."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.authorized:
            req.add_header("Authorization", f"Bearer {ensure_dev_operator_token(self.state_dir)}")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")
        except (urllib.error.URLError, OSError):
            return 0, None

    def get(self, path: str, timeout_s: float = 30.0) -> tuple[int, Any]:
        return self.request("GET", path, timeout_s=timeout_s)

    def capture_counts(self, workflow: str, table: str = "requests") -> dict[str, Any]:
        """Counts of a workflow in a table: rows, events, final (and inserted, freshness_ms for requests)."""
        status, body = self.get(f"/api/v1/capture?workflow={workflow}")
        if status != 200:
            raise RuntimeError(f"capture counts: HTTP {status} {body}")
        return dict(body["tables"][table])

    def wait_for_rows(self, workflow: str, expected: int, timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll until the workflow has ``expected`` distinct events; returns the last counts."""
        deadline = time.monotonic() + timeout_s
        counts: dict[str, Any] = {}
        while time.monotonic() < deadline:
            counts = self.capture_counts(workflow)
            if counts["events"] >= expected:
                return counts
            time.sleep(0.2)
        raise AssertionError(f"{workflow}: {counts} after {timeout_s}s, expected {expected} events")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:] if self.log_file.exists() else ""


def inference_event(
    workflow: str,
    i: int,
    *,
    tenant: str = "acme",
    user: str | None = None,
    response: str | None = None,
    ok: bool = True,
    model: str = "live",
    fingerprint: str = "fp-route-tickets",
    pad: int = 200,
) -> events_pb2.InferenceEvent:
    """A realistic finished request (~1 KB): a ticket-routing prompt answered with a tool call."""
    rng = random.Random(i)
    answer = json.dumps(
        {"name": "route_ticket", "arguments": {"team": rng.choice(["billing", "tech", "sales"])}}
    )
    event = events_pb2.InferenceEvent(
        meta=codec.new_meta(tenant=tenant, workflow=workflow, producer="test"),
        request_id=f"req-{uuid.uuid4().hex[:16]}",
        messages=[
            common_pb2.ChatMessage(role="system", content="You route support tickets. Call route_ticket."),
            common_pb2.ChatMessage(
                role="user", content=user or f"Ticket #{i}: {'the app crashes ' * (pad // 16)}"
            ),
        ],
        tools=[
            common_pb2.Tool(
                name="route_ticket",
                description="Send the ticket to a team",
                parameters_json='{"type": "object", "properties": {"team": {"type": "string"}}}',
            )
        ],
        prompt_text="<|im_start|>system\nYou route support tickets.<|im_end|>\n" + "p" * pad,
        response_text=answer if response is None else response,
        route=common_pb2.Route(target=common_pb2.RouteTarget(model=model), mode=common_pb2.ROUTE_MODE_LIVE),
        usage=common_pb2.Usage(prompt_tokens=150 + i % 50, completion_tokens=20),
        latency_ms=50.0 + (i % 100) * 3.0,
        status=common_pb2.STATUS_OK if ok else common_pb2.STATUS_ERROR,
        error_code="" if ok else "UNAVAILABLE",
        template_fingerprint=fingerprint,
    )
    return event


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], *, rate_per_s: float | None = None
) -> int:
    """Send (key, value) records with an idempotent producer, optionally paced; returns the count.

    Pass a generator of ``stamped(...)`` to stamp ``published_at`` at the moment of sending.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    sent, pending, started = 0, [], time.monotonic()
    try:
        for key, value in records:
            if rate_per_s:
                await asyncio.sleep(max(0.0, started + sent / rate_per_s - time.monotonic()))
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def stamped(event: events_pb2.InferenceEvent) -> tuple[bytes, bytes]:
    """(key, value) of an event with ``published_at`` = now."""
    event.meta.published_at.FromNanoseconds(time.time_ns())
    return codec.encode_key(event.meta.tenant, event.meta.workflow), codec.encode_event(event)


async def partitions(bootstrap: str, topic_names: Iterable[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topic_names))
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def commit_for_group(
    bootstrap: str, group_id: str, offsets: Mapping[TopicPartition, OffsetAndMetadata]
) -> None:
    """Commit offsets (with metadata) for a group that has no running member."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(dict(offsets))
    finally:
        await consumer.stop()


async def start_at_end(bootstrap: str, group_id: str) -> None:
    """Commit the group's offsets at the end of every captured topic, so a new collector captures
    only what is sent from now on (a shared broker's older events are not drained first)."""
    tps = await partitions(bootstrap, CAPTURES)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    await commit_for_group(bootstrap, group_id, {tp: OffsetAndMetadata(o, "") for tp, o in ends.items()})
