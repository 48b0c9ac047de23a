"""Pytest plugin: one real single-node Kafka broker per test session.

Register it with ``pytest_plugins = ["tests.integration.kafka_fixtures"]`` (or ``-p``), then ask
for ``kafka_bootstrap`` ("127.0.0.1:<port>", every cumulus topic created) or ``kafka_config``.

The broker runs on two free ports, never 9092/9093, with its data in a temporary folder, so a
developer's running stack is not disturbed. The jars come from ``<repo>/.cumulus/kafka/libs``,
the folder ``cumulus up`` uses too, so they are downloaded once per machine. The broker gets its
own process group and the whole group is stopped at teardown: no java process outlives the tests.

Outage tests ask for ``restartable_kafka`` instead: a broker of their own (function scope) that they
may ``stop()`` and ``start()`` again on the same ports and data, so topics and records survive.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cumulus.config import KafkaConfig
from cumulus.errors import NotReady
from cumulus.kafka.admin import ensure_topics
from cumulus.kafka.topics import ALL_TOPICS
from ops.stack import kafka

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


def _launch(layout: kafka.BrokerLayout, config: KafkaConfig) -> subprocess.Popen[bytes]:
    """Start the broker in its own process group (stopped as a whole), its output appended to its log."""
    with layout.log_file.open("ab") as log_file:
        return subprocess.Popen(
            kafka.broker_command(layout, config),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=kafka.broker_env(),
            start_new_session=True,
        )


def _launch_until_ready(layout: kafka.BrokerLayout, config: KafkaConfig) -> subprocess.Popen[bytes]:
    """Start the broker and wait until it answers; fail the test with its log tail when it does not."""
    proc = _launch(layout, config)
    try:
        # A loop of its own: this may be called from a thread while the test's loop keeps running.
        asyncio.run(_wait_ready_or_exit(proc, layout.bootstrap))
    except NotReady as exc:
        _stop(proc)
        pytest.fail(f"{exc}\n--- tail of {layout.log_file} ---\n{_log_tail(layout.log_file)}")
    return proc


def _prepare(state_dir: Path, config: KafkaConfig) -> kafka.BrokerLayout:
    """Jars, server.properties and formatted storage for a broker under ``state_dir``."""
    layout = kafka.BrokerLayout.from_config(state_dir, config, kafka.ensure_jars(SHARED_LIBS))
    kafka.write_server_properties(layout, config)
    kafka.format_storage(layout)
    return layout


def _create_topics(bootstrap: str, config: KafkaConfig) -> None:
    asyncio.run(ensure_topics(bootstrap, ALL_TOPICS, config.partitions, config.replication_factor))


@dataclass
class RestartableKafka:
    """A broker a test may stop and start again on the same ports and data directory.

    ``stop()`` and ``start()`` block until the broker is down or ready; call them through
    ``asyncio.to_thread`` from an async test so its event loop keeps running meanwhile.
    """

    layout: kafka.BrokerLayout
    config: KafkaConfig
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return self.layout.bootstrap

    def start(self) -> None:
        """Start the broker (no-op when running) and wait until it answers metadata requests."""
        if self.proc is None:
            self.proc = _launch_until_ready(self.layout, self.config)

    def stop(self) -> None:
        """SIGTERM the broker (a clean shutdown) and wait for it to exit; no-op when stopped."""
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


def start_broker(state_dir: Path) -> RestartableKafka:
    """A running broker on free ports with every cumulus topic, for scripts (benches) and fixtures.

    The caller must ``stop()`` it (a ``finally`` or an ExitStack callback).
    """
    port, controller_port = _free_ports(2)
    config = KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}", controller_port=controller_port)
    broker = RestartableKafka(_prepare(state_dir, config), config)
    broker.start()
    try:
        _create_topics(broker.bootstrap, config)
    except BaseException:
        broker.stop()
        raise
    return broker


@pytest.fixture
def restartable_kafka(tmp_path: Path) -> Iterator[RestartableKafka]:
    """A broker of this test's own, every cumulus topic created, always stopped at teardown."""
    broker = start_broker(tmp_path / "kafka-state")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_config() -> KafkaConfig:
    """The settings of the session's broker: default partitions, free loopback ports."""
    port, controller_port = _free_ports(2)
    return KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}", controller_port=controller_port)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_config: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a broker, create every cumulus topic, yield its bootstrap address, stop it."""
    layout = _prepare(tmp_path_factory.mktemp("kafka-state"), kafka_config)
    started = time.monotonic()
    proc = _launch_until_ready(layout, kafka_config)
    try:
        ready_s = time.monotonic() - started
        _create_topics(layout.bootstrap, kafka_config)
        print(f"kafka broker ready in {ready_s:.1f}s at {layout.bootstrap} (log: {layout.log_file})")
        yield layout.bootstrap
    finally:
        _stop(proc)
