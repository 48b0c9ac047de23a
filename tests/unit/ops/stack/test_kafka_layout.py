"""The local broker's files, command line and tool checks, without starting Java or Maven.

Missing or failing tools are simulated with a PATH holding only small shell scripts.
"""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from cumulus.config import KafkaConfig
from cumulus.errors import ConfigError, MissingTool, NotReady, StackError
from ops.stack import kafka
from ops.stack.kafka import BrokerLayout


@pytest.fixture
def config() -> KafkaConfig:
    return KafkaConfig(bootstrap_servers="127.0.0.1:19092", controller_port=19093, partitions=5, heap="384m")


@pytest.fixture
def layout(tmp_path: Path, config: KafkaConfig) -> BrokerLayout:
    return BrokerLayout.from_config(tmp_path / "state", config)


@pytest.fixture
def tool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that is the whole PATH: no java, no mvn until a test adds a fake."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_layout_puts_everything_under_state_dir_kafka(tmp_path: Path, layout: BrokerLayout) -> None:
    root = (tmp_path / "state" / "kafka").resolve()
    assert layout.root == root
    assert layout.data_dir == root / "data"
    assert layout.libs_dir == root / "libs"
    assert layout.properties_file == root / "server.properties"
    assert layout.log_file == root / "kafka.log"
    assert layout.bootstrap == "127.0.0.1:19092"


def test_shared_libs_dir_overrides_the_default(tmp_path: Path, config: KafkaConfig) -> None:
    shared = tmp_path / "cache" / "libs"
    layout = BrokerLayout.from_config(tmp_path / "state", config, libs_dir=shared)
    assert layout.libs_dir == shared.resolve()
    assert layout.classpath == f"{shared.resolve()}/*"


def test_properties_bind_loopback_ports_and_log_dir(layout: BrokerLayout, config: KafkaConfig) -> None:
    path = kafka.write_server_properties(layout, config)
    props = properties(path.read_text())
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "0@127.0.0.1:19093"
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"] == str(layout.data_dir)
    assert props["num.partitions"] == "5"
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert layout.data_dir.is_dir()


def test_localhost_is_accepted_as_loopback() -> None:
    assert kafka.parse_bootstrap("localhost:9092") == ("127.0.0.1", 9092)


@pytest.mark.parametrize(
    "bootstrap", ["kafka:9092", "10.0.0.5:9092", "127.0.0.1:9092,127.0.0.1:9094", "127.0.0.1"]
)
def test_non_local_bootstrap_is_refused(tmp_path: Path, bootstrap: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        BrokerLayout.from_config(tmp_path, KafkaConfig(bootstrap_servers=bootstrap))


def test_controller_port_must_differ_from_broker_port(tmp_path: Path) -> None:
    config = KafkaConfig(bootstrap_servers="127.0.0.1:9093", controller_port=9093)
    with pytest.raises(ConfigError, match="controller_port"):
        BrokerLayout.from_config(tmp_path, config)


def test_broker_command_has_heap_classpath_and_main_class(
    tool_dir: Path, layout: BrokerLayout, config: KafkaConfig
) -> None:
    fake_tool(tool_dir, "java", "exit 0\n")
    argv = kafka.broker_command(layout, config)
    assert argv[0] == str(tool_dir / "java")
    assert "-Xmx384m" in argv
    assert argv[argv.index("-cp") + 1] == layout.classpath
    assert f"-Dlog4j2.configurationFile={kafka.LOG4J2_CONFIG}" in argv
    assert argv[-2:] == ["kafka.Kafka", str(layout.properties_file)]
    assert kafka.LOG4J2_CONFIG.is_file()


def test_broker_env_drops_jvm_option_variables() -> None:
    env = kafka.broker_env({"PATH": "/usr/bin", "JAVA_TOOL_OPTIONS": "-Xmx8g", "JDK_JAVA_OPTIONS": "-Xmx8g"})
    assert env == {"PATH": "/usr/bin"}


def test_missing_java_names_the_package(tool_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingTool, match="openjdk-17-jre-headless"):
        kafka.ensure_jars(tmp_path / "libs")


def test_missing_maven_names_the_package(tool_dir: Path, tmp_path: Path) -> None:
    fake_tool(tool_dir, "java", "exit 0\n")
    with pytest.raises(MissingTool, match="apt-get install maven"):
        kafka.ensure_jars(tmp_path / "libs")


def test_missing_java_for_the_broker_command(
    tool_dir: Path, layout: BrokerLayout, config: KafkaConfig
) -> None:
    with pytest.raises(MissingTool, match="Java 17"):
        kafka.broker_command(layout, config)


def test_present_jars_need_no_tools(tool_dir: Path, tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / kafka.KAFKA_JAR).touch()
    assert kafka.ensure_jars(libs) == libs


def test_failed_maven_run_reports_its_output_tail(tool_dir: Path, tmp_path: Path) -> None:
    fake_tool(tool_dir, "java", "exit 0\n")
    fake_tool(tool_dir, "mvn", "echo 'Could not resolve org.apache.kafka:kafka_2.13'\nexit 1\n")
    with pytest.raises(StackError, match=r"Could not resolve org\.apache\.kafka"):
        kafka.ensure_jars(tmp_path / "libs")
    assert not (tmp_path / "libs").exists()


def test_jars_are_moved_into_place_only_when_complete(tool_dir: Path, tmp_path: Path) -> None:
    fake_tool(tool_dir, "java", "exit 0\n")
    # Stands in for copy-dependencies: writes the kafka jar into -DoutputDirectory=<dir>.
    script = 'for a in "$@"; do case "$a" in -DoutputDirectory=*) d="${a#*=}";; esac; done\n'
    script += f'/bin/mkdir -p "$d" && : > "$d/{kafka.KAFKA_JAR}"\n'
    fake_tool(tool_dir, "mvn", script)
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "kafka_2.13-3.9.0.jar").touch()  # an older version must not be mixed in
    assert kafka.ensure_jars(libs) == libs
    assert sorted(p.name for p in libs.iterdir()) == [kafka.KAFKA_JAR]
    assert not (tmp_path / "libs.partial").exists()


def test_format_storage_skips_a_formatted_dir(tool_dir: Path, layout: BrokerLayout) -> None:
    layout.data_dir.mkdir(parents=True)
    (layout.data_dir / "meta.properties").write_text("cluster.id=abc\n")
    assert kafka.format_storage(layout) is False


def test_cluster_ids_are_kafka_uuids() -> None:
    for _ in range(200):
        cluster_id = kafka.new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


async def test_wait_until_ready_times_out_with_not_ready() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NotReady, match=f"127.0.0.1:{port} not ready"):
        await kafka.wait_until_ready(f"127.0.0.1:{port}", timeout_s=0.5)
