"""Pytest plugin: one real single-node Kafka broker per test session.

Register it with ``pytest_plugins = ["tests.integration.kafka_fixtures"]`` (or ``-p``), then ask
for ``kafka_bootstrap`` ("127.0.0.1:<port>", every cumulus topic created) or ``kafka_config``.

The broker runs on two free ports, never 9092/9093, with its data in a temporary folder, so a
developer's running stack is not disturbed. The jars come from ``<repo>/.cumulus/kafka/libs``,
the folder ``cumulus up`` uses too, so they are downloaded once per machine. The broker gets its
own process group and the whole group is stopped at teardown: no java process outlives the tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cumulus.config import KafkaConfig
from cumulus.errors import NotReady
from cumulus.kafka_admin import ensure_topics
from cumulus.stack import kafka
from cumulus.topics import ALL_TOPICS

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_LIBS = REPO_ROOT / ".cumulus" / "kafka" / "libs"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 4000
_RESERVED_PORTS = {9092, 9093}


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free now (distinct, never the default stack's)."""
    ports: list[int] = []
    sockets = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sockets.append(sock)  # held open until all are chosen, so they differ
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in _RESERVED_PORTS:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def _log_tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log file)"
    return text[-LOG_TAIL_CHARS:]


async def _wait_ready_or_exit(proc: subprocess.Popen[bytes], bootstrap: str) -> None:
    """wait_until_ready, but give up at once when the broker process dies."""
    ready = asyncio.create_task(kafka.wait_until_ready(bootstrap, READY_TIMEOUT_S))
    while not ready.done():
        if proc.poll() is not None:
            ready.cancel()
            raise NotReady(f"the Kafka broker exited with code {proc.returncode} before it was ready")
        await asyncio.wait({ready}, timeout=0.2)
    ready.result()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the broker's process group (a clean shutdown), SIGKILL it if that takes too long."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
    except ProcessLookupError:
        proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def kafka_config() -> KafkaConfig:
    """The settings of the session's broker: default partitions, free loopback ports."""
    port, controller_port = _free_ports(2)
    return KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}", controller_port=controller_port)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_config: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a broker, create every cumulus topic, yield its bootstrap address, stop it."""
    libs = kafka.ensure_jars(SHARED_LIBS)
    layout = kafka.BrokerLayout.from_config(tmp_path_factory.mktemp("kafka-state"), kafka_config, libs)
    kafka.write_server_properties(layout, kafka_config)
    kafka.format_storage(layout)
    started = time.monotonic()
    with layout.log_file.open("wb") as log_file:
        proc = subprocess.Popen(
            kafka.broker_command(layout, kafka_config),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=kafka.broker_env(),
            start_new_session=True,  # its own process group, stopped as a whole at teardown
        )
    try:
        try:
            asyncio.run(_wait_ready_or_exit(proc, layout.bootstrap))
        except NotReady as exc:
            pytest.fail(f"{exc}\n--- tail of {layout.log_file} ---\n{_log_tail(layout.log_file)}")
        ready_s = time.monotonic() - started
        asyncio.run(
            ensure_topics(
                layout.bootstrap, ALL_TOPICS, kafka_config.partitions, kafka_config.replication_factor
            )
        )
        print(f"kafka broker ready in {ready_s:.1f}s at {layout.bootstrap} (log: {layout.log_file})")
        yield layout.bootstrap
    finally:
        _stop(proc)
