"""The local Apache Kafka broker: one KRaft node (broker + controller) on loopback, no Docker.

The broker runs from Maven Central jars (``deploy/kafka/pom.xml``) on the machine's Java 17.
This module prepares everything a supervisor needs and starts nothing long-lived itself:

1. :func:`ensure_jars` fetches the jars once into a shared folder (``.cumulus/kafka/libs``);
2. :func:`write_server_properties` renders the single-node config for a :class:`BrokerLayout`;
3. :func:`format_storage` formats the data directory (once; later calls are no-ops);
4. :func:`broker_command` / :func:`broker_env` give the argv and environment to ``Popen``;
5. :func:`wait_until_ready` polls the broker until it answers metadata requests.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from cumulus.config import KafkaConfig
from cumulus.errors import ConfigError, MissingTool, NotReady, StackError
from cumulus.kafka import security
from cumulus.logs import get_logger

KAFKA_VERSION = "4.0.2"
KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"

_DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
POM_FILE = _DEPLOY_DIR / "pom.xml"
LOG4J2_CONFIG = _DEPLOY_DIR / "log4j2.properties"

_JAVA_FIX = "install Java 17: apt-get install openjdk-17-jre-headless"
_MAVEN_FIX = "install Maven: apt-get install maven"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost"}
_OUTPUT_TAIL_CHARS = 3000

log = get_logger("stack.kafka")


def require_tool(name: str, fix: str) -> str:
    """Return the absolute path of ``name`` on PATH, or raise MissingTool saying what to install."""
    path = shutil.which(name)
    if path is None:
        raise MissingTool(f"`{name}` is not on PATH; the local Kafka broker needs it", fix=fix)
    return path


def ensure_jars(libs_dir: Path, pom: Path = POM_FILE) -> Path:
    """Make sure ``libs_dir`` holds the Kafka broker jars; fetch them with Maven when it does not.

    The jars are copied into a sibling ``.partial`` folder and renamed into place only when Maven
    succeeded, so an interrupted download never looks like a complete one (the kafka jar alone is
    the "complete" marker). A folder from another Kafka version is replaced, not mixed with.
    """
    if (libs_dir / KAFKA_JAR).is_file():
        return libs_dir
    require_tool("java", _JAVA_FIX)
    mvn = require_tool("mvn", _MAVEN_FIX)
    libs_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = libs_dir.with_name(libs_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    goal = ["dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
    argv = [mvn, "-q", "-B", "-f", str(pom), *goal]
    started = time.monotonic()
    _run(argv, what="fetching the Kafka jars with Maven", timeout_s=900)
    if not (partial / KAFKA_JAR).is_file():
        raise StackError(f"Maven finished but {KAFKA_JAR} is not in {partial}", fix=f"check {pom}")
    shutil.rmtree(libs_dir, ignore_errors=True)
    partial.rename(libs_dir)
    log.info("kafka.jars_fetched", libs=str(libs_dir), seconds=round(time.monotonic() - started, 1))
    return libs_dir


def parse_bootstrap(bootstrap_servers: str) -> tuple[str, int]:
    """Split the single loopback ``host:port`` the local broker should listen on.

    The local broker binds loopback only; a remote or multi-broker bootstrap means the config
    points at a real cluster, which the local stack must not pretend to be.
    """
    servers = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
    host, _, port = servers[0].rpartition(":") if len(servers) == 1 else ("", "", "")
    if host not in _LOOPBACK_HOSTS or not port.isdigit():
        raise ConfigError(
            f"kafka.bootstrap_servers={bootstrap_servers!r}: the local broker needs one loopback host:port",
            fix="set kafka.bootstrap_servers to 127.0.0.1:<port>, or don't start the local stack's Kafka",
        )
    return "127.0.0.1", int(port)


@dataclass(frozen=True)
class BrokerLayout:
    """Where one local broker keeps its files and which loopback ports it listens on."""

    root: Path
    """``<state_dir>/kafka``: server.properties and the log file live here."""
    libs_dir: Path
    """The jars; shared by every layout (the tests reuse the stack's download)."""
    host: str
    port: int
    controller_port: int
    secure: bool = False
    """SASL_SSL with ACLs (ops/stack/kafka_secure.py); its data lives apart from the plaintext one's."""

    @classmethod
    def from_config(
        cls, state_dir: Path, config: KafkaConfig, libs_dir: Path | None = None, secure: bool = False
    ) -> BrokerLayout:
        """Layout under ``state_dir/kafka``; jars in libs_dir, else config.libs_dir, else ``libs/``."""
        host, port = parse_bootstrap(config.bootstrap_servers)
        if port == config.controller_port:
            raise ConfigError(
                f"kafka.controller_port={port} is also the broker port",
                fix="give kafka.controller_port its own port (default 9093)",
            )
        root = state_dir.resolve() / "kafka"
        libs = (libs_dir or config.libs_dir or root / "libs").resolve()
        return cls(root, libs, host, port, config.controller_port, secure)

    @property
    def data_dir(self) -> Path:
        return self.root / ("data-secure" if self.secure else "data")

    @property
    def properties_file(self) -> Path:
        return self.root / "server.properties"

    @property
    def log_file(self) -> Path:
        """Where the supervisor sends the broker's stdout and stderr (Log4j2 writes to stdout)."""
        return self.root / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def classpath(self) -> str:
        # Java expands the trailing `*` itself, so this works without a shell.
        return str(self.libs_dir / "*")


def render_server_properties(
    layout: BrokerLayout, config: KafkaConfig, overrides: Mapping[str, str] | None = None
) -> str:
    """The broker's server.properties: single-node combined mode with static voters, loopback only.

    ``overrides`` replace or add entries (the secure listener, ops/stack/kafka_secure.py)."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "0",
        "controller.quorum.voters": f"0@{layout.host}:{layout.controller_port}",
        "listeners": f"PLAINTEXT://{layout.host}:{layout.port},CONTROLLER://{layout.host}:{layout.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{layout.bootstrap}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(layout.data_dir),
        # Topics are created by cumulus.kafka.admin with their own settings; a typo'd topic name
        # in a producer must fail loudly instead of creating a stray topic.
        "auto.create.topics.enable": "false",
        "num.partitions": str(config.partitions),
        "default.replication.factor": "1",
        # One broker: internal topics cannot have more replicas than that.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Consumers of a fresh group start at once instead of waiting 3 s for more members.
        "group.initial.rebalance.delay.ms": "0",
        # A laptop-sized broker: 2 cores, a few hundred MB of heap, bounded disk use.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.retention.hours": "72",
        "log.retention.bytes": str(1024**3),
        "log.segment.bytes": str(64 * 1024**2),
    }
    settings.update(overrides or {})
    header = "# Written by ops.stack.kafka; edits are overwritten on the next start.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def write_server_properties(
    layout: BrokerLayout, config: KafkaConfig, overrides: Mapping[str, str] | None = None
) -> Path:
    """Write ``server.properties`` (creating the layout's folders) and return its path."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    layout.properties_file.write_text(render_server_properties(layout, config, overrides))
    layout.properties_file.chmod(0o600)  # a secure broker's holds the admin password
    return layout.properties_file


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding (what `random-uuid` prints)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # A leading '-' would be read as an option by the storage tool's argument parser.
        if not cluster_id.startswith("-"):
            return cluster_id


def format_storage(
    layout: BrokerLayout, cluster_id: str | None = None, extra_args: Sequence[str] = ()
) -> bool:
    """Format the data directory for KRaft once; return False when it was already formatted.

    Reformatting would give the node a new cluster id and orphan its data, so an existing
    ``meta.properties`` is left alone.
    """
    if (layout.data_dir / "meta.properties").is_file():
        return False
    java = require_tool("java", _JAVA_FIX)
    tool = [java, "-cp", layout.classpath, f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", STORAGE_TOOL_MAIN]
    args = ["format", "--cluster-id", cluster_id or new_cluster_id(), "--config", str(layout.properties_file)]
    argv = tool + args + list(extra_args)
    _run(argv, what=f"formatting Kafka storage in {layout.data_dir}", timeout_s=120)
    return True


def broker_command(layout: BrokerLayout, config: KafkaConfig) -> list[str]:
    """The argv that runs the broker in the foreground (the supervisor owns pid and log files)."""
    java = require_tool("java", _JAVA_FIX)
    return [
        java,
        f"-Xmx{config.heap}",
        # Serial GC: no GC threads competing with the services for the 2 cores, and with a heap
        # this small its pauses stay in the milliseconds.
        "-XX:+UseSerialGC",
        # Die instead of limping on; the supervisor sees the exit and reports it.
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        "-cp",
        layout.classpath,
        BROKER_MAIN,
        str(layout.properties_file),
    ]


def broker_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the broker: the caller's, minus JVM option variables.

    JAVA_TOOL_OPTIONS and JDK_JAVA_OPTIONS are read by every JVM and would override the heap and
    GC chosen in :func:`broker_command`.
    """
    env = dict(os.environ if base is None else base)
    for name in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"):
        env.pop(name, None)
    return env


async def wait_until_ready(bootstrap: str, timeout_s: float) -> None:
    """Poll until the broker at ``bootstrap`` answers a metadata request listing a broker.

    Raises NotReady with the last connection error when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=5000, **security.client_kwargs()
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            if cluster.get("brokers"):
                return
            last_error = "metadata lists no broker yet"
        except (KafkaError, OSError) as exc:  # OSError covers TimeoutError
            last_error = f"{type(exc).__name__}: {exc}"
        finally:
            await admin.close()
        if time.monotonic() >= deadline:
            raise NotReady(
                f"Kafka at {bootstrap} not ready after {timeout_s:.0f}s ({last_error})",
                fix="check that the broker process is running and read its log (kafka.log in its state dir)",
            )
        await asyncio.sleep(0.25)


def _run(argv: list[str], *, what: str, timeout_s: float) -> None:
    """Run a short-lived tool, raising StackError with the tail of its output when it fails."""
    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        # TimeoutExpired may carry bytes even with text=True (CPython keeps the raw buffer).
        output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output or ""
        raise StackError(f"{what} timed out after {timeout_s:.0f}s: {output[-_OUTPUT_TAIL_CHARS:]}") from exc
    if done.returncode != 0:
        raise StackError(
            f"{what} failed (exit {done.returncode}): {done.stdout[-_OUTPUT_TAIL_CHARS:]}",
            fix="read the output above; a network or disk problem usually shows in its last lines",
        )
