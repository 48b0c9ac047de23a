"""The production deploy files: docker-compose.yml, the Dockerfile and the Triton model repository.

No Docker here: the compose file is checked as data against the config it feeds (every
CUMULUS_* variable must load, every health port must be the service's), and the TensorRT-LLM
repository is rendered against a stand-in of the image's folder and parsed with Triton's own
ModelConfig proto.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cumulus.config import CumulusConfig, load_config
from cumulus.kafka import security
from services.collector.clickhouse import parse_dsn

ROOT = Path(__file__).resolve().parents[2]
TRITON_DIR = ROOT / "deploy" / "triton-trtllm"
PYTHON_SERVICES = ("gateway", "collector", "trainer", "judge", "router")
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
INFRA = (*KAFKA_NODES, "kafka-init", "clickhouse", "triton", "topic-init", "tls-init")
DATA_TYPE = model_config_pb2.DataType


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default}, as it resolves with nothing set."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def published_ports(service: dict[str, Any]) -> set[int]:
    """Host ports from short-syntax entries: "host:container" or "ip:host:container"."""
    return {int(str(p).split(":")[-2]) for p in service.get("ports", [])}


def test_every_service_is_defined(services: dict[str, Any]) -> None:
    assert set(services) == set(PYTHON_SERVICES) | set(INFRA)


@pytest.mark.parametrize(
    ("service", "ports"),
    [
        ("kafka-1", {19092}),
        ("kafka-2", {19093}),
        ("kafka-3", {19094}),
        ("clickhouse", {8123}),
        ("triton", {8000, 8001, 8002}),
        ("gateway", {50051}),
    ],
)
def test_ports_are_published(services: dict[str, Any], service: str, ports: set[int]) -> None:
    assert ports <= published_ports(services[service])


def test_three_sasl_ssl_brokers_from_what_kafka_init_writes(services: dict[str, Any], tmp_path: Path) -> None:
    from ops.stack import kafka_cluster

    init = services["kafka-init"]
    assert init["command"][:3] == ["cumulus", "kafka", "init"] and "kafka-secrets:/secrets" in init["volumes"]
    files = kafka_cluster.init_cluster(tmp_path)  # what kafka-init writes, here
    assert (tmp_path / "scram-args").read_text().count("--add-scram") == len(security.PRINCIPALS)
    for n, name in enumerate(KAFKA_NODES, start=1):
        node = services[name]
        command = " ".join(node["command"])
        assert f"/secrets/{name}.properties" in command and "$$(cat /secrets/scram-args)" in command
        assert "kafka-secrets:/secrets:ro" in node["volumes"]
        props = dict(
            line.split("=", 1) for line in (tmp_path / f"{name}.properties").read_text().splitlines() if line
        )
        assert props["node.id"] == str(n) and props["controller.quorum.voters"].count("@kafka-") == 3
        assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,HOST:SASL_SSL,CONTROLLER:SSL"
        assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("3", "2")
        assert props["allow.everyone.if.no.acl.found"] == "false"
        # The host listener advertises localhost on the port compose publishes for it.
        (mapping,) = node["ports"]
        assert f"HOST://localhost:{mapping.split(':')[1]}" in props["advertised.listeners"]
        assert mapping.endswith(":9094") and "HOST://:9094" in props["listeners"]
        assert tmp_path / f"{name}-keystore.pem" in files
    assert CumulusConfig().kafka.replication_factor == 1  # 3 comes from compose's environment


def test_python_services_share_one_build_and_run_their_module(services: dict[str, Any]) -> None:
    def image(name: str) -> tuple[str, str]:
        return services[name]["image"], json.dumps(services[name]["build"], sort_keys=True)

    assert {image(name) for name in (*PYTHON_SERVICES, "topic-init", "kafka-init")} == {image("gateway")}
    for name in PYTHON_SERVICES:
        assert services[name]["command"] == [f"services.{name}"]
        assert "entrypoint" not in services[name]
        assert (ROOT / "services" / name / "__main__.py").exists()


def test_dockerfile_runs_modules_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.MULTILINE)
    assert entrypoint and json.loads(entrypoint.group(1)) == ["python", "-m"]
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^RUN .*pip install .*\.", text, re.MULTILINE)


def test_topic_init_runs_the_cli_once_before_the_services(services: dict[str, Any]) -> None:
    init = services["topic-init"]
    assert init["entrypoint"] == [] and init["command"] == ["cumulus", "kafka", "grant"]
    assert init["restart"] == "no"
    env = {k: interpolate(str(v)) for k, v in init["environment"].items()}
    assert load_config(env=env).kafka.sasl_username == security.ADMIN  # topics and ACLs as admin
    for name in PYTHON_SERVICES:
        assert services[name]["depends_on"]["topic-init"] == {"condition": "service_completed_successfully"}
        for node in KAFKA_NODES:
            assert services[name]["depends_on"][node] == {"condition": "service_healthy"}
    assert services["gateway"]["depends_on"]["triton"] == {"condition": "service_healthy"}
    assert services["collector"]["depends_on"]["clickhouse"] == {"condition": "service_healthy"}


def test_every_healthy_dependency_has_a_healthcheck(services: dict[str, Any]) -> None:
    for service in services.values():
        for target, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], target


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_service_env_is_valid_config_and_healthcheck_hits_its_port(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ./cumulus.yaml
    env = {k: interpolate(str(v)) for k, v in services[name]["environment"].items()}
    config = load_config(env=env)  # raises on any misspelt CUMULUS_* variable
    assert config.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    assert (config.kafka.security_protocol, config.kafka.replication_factor) == ("SASL_SSL", 3)
    assert config.kafka.sasl_username == ""  # logs in as its own name
    # Its password, and only its own, is mounted where the config reads it.
    password = next(
        v for v in services[name]["volumes"] if isinstance(v, dict) and v["target"] == "/run/kafka/password"
    )
    assert password["volume"]["subpath"] == f"credentials/{name}" and password["read_only"]
    assert str(config.kafka.sasl_password_file) == "/run/kafka/password"
    assert config.triton.host == "triton"
    target = parse_dsn(config.clickhouse_dsn)
    assert (target.scheme, target.host, target.port) == ("http", "clickhouse", 8123)
    service_config = getattr(config, name)
    assert service_config.host == "0.0.0.0"
    check = " ".join(services[name]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{service_config.health_port}/healthz" in check


def test_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert {"clickhouse-data", "artifacts", "kafka-secrets", *(f"{n}-data" for n in KAFKA_NODES)} <= set(
        compose["volumes"]
    )
    assert "clickhouse-data:/var/lib/clickhouse" in services["clickhouse"]["volumes"]
    artifacts_dir = CumulusConfig(state_dir=Path("/var/lib/cumulus")).artifacts_dir
    for name, mode in (("trainer", ""), ("collector", ""), ("gateway", ":ro")):
        assert f"artifacts:{artifacts_dir}{mode}" in services[name]["volumes"], name


def test_the_gateway_and_the_collector_share_one_redaction_key(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """Placeholders and pseudonyms made by the gateway (capture) and the collector (store,
    erasure) only match under one key."""
    env = {k: str(v) for k, v in compose["x-cumulus-env"].items()}
    key_file = CumulusConfig.model_validate({"privacy": {"key_file": env["CUMULUS_PRIVACY__KEY_FILE"]}})
    folder = key_file.redaction_key_file.parent
    for name in ("gateway", "collector"):
        assert f"privacy:{folder}" in services[name]["volumes"], name
    assert "receipts:/var/lib/cumulus/receipts" in services["collector"]["volumes"]


def test_triton_has_a_gpu_and_the_model_repository(services: dict[str, Any]) -> None:
    triton = services["triton"]
    assert re.fullmatch(
        r"nvcr\.io/nvidia/tritonserver:[\d.]+-trtllm-python-py3", interpolate(triton["image"])
    )
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert "./deploy/triton-trtllm:/deploy:ro" in triton["volumes"]
    assert "/deploy/render_repo.py --out /models" in " ".join(triton["command"])
    assert "--model-repository=/models" in " ".join(triton["command"])
    render_repo = load_render_repo()
    for model in render_repo.SERVED_MODELS:  # every required placeholder has a value
        render_repo.values_for(model, triton["environment"])


# --- the TensorRT-LLM model repository --------------------------------------------------------


def load_render_repo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_repo", TRITON_DIR / "render_repo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A stand-in for the image's /app/all_models/inflight_batcher_llm: the tensor names the
# ensemble relies on, and the placeholder styles of the real files (numeric and string ones).
FAKE_PREPROCESSING = """name: "preprocessing"
backend: "python"
max_batch_size: ${triton_max_batch_size}
input [
  { name: "QUERY" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "REQUEST_OUTPUT_LEN" data_type: TYPE_INT32 dims: [ 1 ] }
]
output [
  { name: "INPUT_ID" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "REQUEST_INPUT_LEN" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "REQUEST_OUTPUT_LEN" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "OUT_END_ID" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "OUT_PAD_ID" data_type: TYPE_INT32 dims: [ 1 ] }
]
parameters { key: "tokenizer_dir" value: { string_value: "${tokenizer_dir}" } }
parameters { key: "multimodal_model_path" value: { string_value: "${multimodal_model_path}" } }
instance_group [ { count: ${preprocessing_instance_count} kind: KIND_CPU } ]
"""
FAKE_POSTPROCESSING = """name: "postprocessing"
backend: "python"
max_batch_size: ${triton_max_batch_size}
input [
  { name: "TOKENS_BATCH" data_type: TYPE_INT32 dims: [ -1, -1 ] },
  { name: "SEQUENCE_LENGTH" data_type: TYPE_INT32 dims: [ -1 ] }
]
output [ { name: "OUTPUT" data_type: TYPE_STRING dims: [ -1 ] } ]
parameters { key: "tokenizer_dir" value: { string_value: "${tokenizer_dir}" } }
instance_group [ { count: ${postprocessing_instance_count} kind: KIND_CPU } ]
"""
ENV = {
    "LIVE_ENGINE_DIR": "/engines/live",
    "LIVE_TOKENIZER_DIR": "/engines/live/tokenizer",
    "SMALL_ENGINE_DIR": "/engines/small",
    "SMALL_TOKENIZER_DIR": "/engines/small/tokenizer",
    "SMALL_LORA_WEIGHTS_DATA_TYPE": "TYPE_BF16",
}


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    root = tmp_path / "inflight_batcher_llm"
    for component, config in (("preprocessing", FAKE_PREPROCESSING), ("postprocessing", FAKE_POSTPROCESSING)):
        (root / component / "1").mkdir(parents=True)
        (root / component / "config.pbtxt").write_text(config)
        (root / component / "1" / "model.py").write_text(f"# the image's {component} model\n")
    engine = (TRITON_DIR / "templates" / "tensorrt_llm" / "config.pbtxt").read_text()
    (root / "tensorrt_llm").mkdir()
    (root / "tensorrt_llm" / "config.pbtxt").write_text(
        engine.replace("${lora_weights_data_type}", "TYPE_FP16")
    )
    return root


@pytest.fixture
def repository(tmp_path: Path, upstream: Path) -> dict[str, model_config_pb2.ModelConfig]:
    out = tmp_path / "models"
    load_render_repo().render(out, ENV, upstream)
    configs = {}
    for config_file in sorted(out.glob("*/config.pbtxt")):
        config = text_format.Parse(config_file.read_text(), model_config_pb2.ModelConfig())
        assert config.name == config_file.parent.name
        assert (config_file.parent / "1").is_dir()
        configs[config.name] = config
    return configs


def tensors(specs: Any) -> dict[str, tuple[int, list[int], bool]]:
    # ModelOutput has no `optional` field.
    return {t.name: (t.data_type, list(t.dims), getattr(t, "optional", False)) for t in specs}


def test_repository_serves_live_and_small_with_the_request_interface(
    repository: dict[str, model_config_pb2.ModelConfig],
) -> None:
    assert set(repository) == {
        f"{m}{suffix}"
        for m in ("live", "small")
        for suffix in ("", "_preprocessing", "_tensorrt_llm", "_postprocessing")
    }
    for model, lora_type in (("live", DATA_TYPE.TYPE_FP16), ("small", DATA_TYPE.TYPE_BF16)):
        served = repository[model]
        assert served.platform == "ensemble"
        assert tensors(served.input) == {
            "text_input": (DATA_TYPE.TYPE_STRING, [1], False),
            "max_tokens": (DATA_TYPE.TYPE_INT32, [1], False),
            "stream": (DATA_TYPE.TYPE_BOOL, [1], True),
            "lora_task_id": (DATA_TYPE.TYPE_UINT64, [1], True),
            "lora_weights": (lora_type, [-1, -1], True),
            "lora_config": (DATA_TYPE.TYPE_INT32, [-1, 3], True),
        }
        assert tensors(served.output) == {"text_output": (DATA_TYPE.TYPE_STRING, [-1], False)}


def test_engines_are_decoupled_inflight_batchers_with_lora(
    repository: dict[str, model_config_pb2.ModelConfig],
) -> None:
    for model in ("live", "small"):
        engine = repository[f"{model}_tensorrt_llm"]
        assert engine.backend == "tensorrtllm"
        assert engine.model_transaction_policy.decoupled
        params = {k: v.string_value for k, v in engine.parameters.items()}
        assert params["gpt_model_type"] == "inflight_fused_batching"
        assert params["gpt_model_path"] == f"/engines/{model}"
        assert params["exclude_input_in_output"] == "true"
        inputs = tensors(engine.input)
        assert inputs["lora_task_id"][:2] == (DATA_TYPE.TYPE_UINT64, [1])
        assert inputs["lora_config"][:2] == (DATA_TYPE.TYPE_INT32, [-1, 3])
        assert {"input_ids", "request_output_len", "streaming", "lora_weights"} <= set(inputs)
        pre = repository[f"{model}_preprocessing"]
        assert pre.parameters["tokenizer_dir"].string_value == f"/engines/{model}/tokenizer"


def test_ensemble_steps_connect(repository: dict[str, model_config_pb2.ModelConfig]) -> None:
    for model in ("live", "small"):
        served = repository[model]
        available = {t.name for t in served.input}
        for step in served.ensemble_scheduling.step:
            target = repository[step.model_name]
            assert set(step.input_map) <= {t.name for t in target.input}, step.model_name
            assert set(step.input_map.values()) <= available, step.model_name
            assert set(step.output_map) <= {t.name for t in target.output}, step.model_name
            available |= set(step.output_map.values())
        assert {t.name for t in served.output} <= available


def test_image_models_are_copied_and_renamed(tmp_path: Path, upstream: Path) -> None:
    out = tmp_path / "models"
    load_render_repo().render(out, ENV, upstream)
    assert (
        out / "small_postprocessing" / "1" / "model.py"
    ).read_text() == "# the image's postprocessing model\n"
    text = (out / "live_preprocessing" / "config.pbtxt").read_text()
    assert 'string_value: "${multimodal_model_path}"' in text  # unset string parameter: backend default
    load_render_repo().render(out, ENV, upstream)  # rendering again replaces its own output


def test_missing_engine_is_named(tmp_path: Path, upstream: Path) -> None:
    render_repo = load_render_repo()
    env = {k: v for k, v in ENV.items() if k != "SMALL_ENGINE_DIR"}
    with pytest.raises(render_repo.RenderError, match="SMALL_ENGINE_DIR"):
        render_repo.render(tmp_path / "models", env, upstream)


def test_unknown_numeric_placeholder_is_refused(tmp_path: Path, upstream: Path) -> None:
    render_repo = load_render_repo()
    config = upstream / "postprocessing" / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [ -1 ] }", "dims: [ ${new_dim} ] }"))
    with pytest.raises(render_repo.RenderError, match=r"\$\{new_dim\}"):
        render_repo.render(tmp_path / "models", ENV, upstream)


def test_image_drift_in_engine_tensors_is_caught(tmp_path: Path, upstream: Path) -> None:
    render_repo = load_render_repo()
    theirs = upstream / "tensorrt_llm" / "config.pbtxt"
    theirs.write_text(theirs.read_text().replace('name: "lora_config"', 'name: "lora_cfg"'))
    with pytest.raises(render_repo.RenderError, match="lora_config"):
        render_repo.render(tmp_path / "models", ENV, upstream)


def test_refuses_to_wipe_a_foreign_directory(tmp_path: Path, upstream: Path) -> None:
    render_repo = load_render_repo()
    out = tmp_path / "precious"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(render_repo.RenderError, match="refusing"):
        render_repo.render(out, ENV, upstream)
    assert (out / "keep.txt").exists()


def test_the_gateway_serves_tls_from_certificates_tls_init_makes(services: dict[str, Any]) -> None:
    gateway, init = services["gateway"], services["tls-init"]
    env = {k: interpolate(str(v)) for k, v in gateway["environment"].items() if k.startswith("CUMULUS_")}
    config = load_config(path=None, env=env)
    assert config.gateway_server_tls is not None
    assert gateway["depends_on"]["tls-init"]["condition"] == "service_completed_successfully"
    tls_dir = str(config.gateway_server_tls.cert_file.parent)
    assert f"tls:{tls_dir}:ro" in gateway["volumes"]
    assert f"tls:{tls_dir}" in init["volumes"] and tls_dir in init["command"]
    hosts = interpolate(init["command"][init["command"].index("--hosts") + 1]).split(",")
    assert "gateway" in hosts  # the name other containers dial
