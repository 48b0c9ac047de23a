"""The one typed configuration of every service and of the CLI.

Sources, later ones winning: the defaults below (a working local stack with nothing to
configure), a YAML file (``--config``, ``$CUMULUS_CONFIG`` or ``./cumulus.yaml``), then
environment variables ``CUMULUS_<SECTION>__<FIELD>`` (e.g. ``CUMULUS_KAFKA__BOOTSTRAP_SERVERS``).
Unknown keys are refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cumulus.errors import ConfigError

ENV_PREFIX = "CUMULUS_"
CONFIG_ENV = "CUMULUS_CONFIG"
DEFAULT_CONFIG_FILE = "cumulus.yaml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    """Brokers the services connect to (comma separated host:port)."""
    controller_port: int = 9093
    """Local stack only: the KRaft controller listener of the single-node broker."""
    partitions: int = Field(default=3, ge=1)
    """Partitions per cumulus topic; key = workflow keeps one workflow's events ordered."""
    replication_factor: int = Field(default=1, ge=1)
    """1 for the local single broker; 3 in production."""
    heap: str = "512m"
    """Local stack only: JVM heap of the broker (-Xmx)."""
    libs_dir: Path | None = None
    """Local stack only: where the Kafka jars are fetched to; default <state_dir>/kafka/libs."""


class TritonConfig(Section):
    host: str = "127.0.0.1"
    """Where Triton listens (the local stack binds loopback only)."""
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    live_model: str = "qwen2.5-coder-0.5b-instruct"
    """Offline model id served as Triton model `live` (see cumulus.models.catalog)."""
    small_model: str = "smollm2-135m-instruct"
    """Offline model id served as Triton model `small`, the base of every adapter."""
    max_batch_size: int = Field(default=8, ge=1, le=256)
    """Dynamic batching: most requests one forward pass serves."""
    batch_delay_us: int = Field(default=2000, ge=0)
    """Dynamic batching: how long Triton waits to fill a batch."""
    max_new_tokens_cap: int = Field(default=512, ge=1)
    """Upper bound on `max_tokens` any request may ask for."""
    dtype: str = Field(default="bfloat16", pattern="^(bfloat16|float32)$")
    """Weights dtype on CPU: bfloat16 uses AMX where present, float32 everywhere."""
    request_timeout_s: float = Field(default=120.0, gt=0)

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"


class ClickHouseConfig(Section):
    dsn: str = ""
    """`chdb:///abs/path` (embedded, default under the state dir) or `http://host:8123`."""
    database: str = "cumulus"


class ServiceConfig(Section):
    host: str = "127.0.0.1"
    health_port: int
    """HTTP port serving /healthz, /readyz and /metrics for this service."""


class GatewayConfig(ServiceConfig):
    health_port: int = 8090
    grpc_port: int = 50051
    """The client-facing gRPC port of cumulus.v1.Gateway."""


class CollectorConfig(ServiceConfig):
    health_port: int = 6066
    """Also the port of the collector's read API (Faust web)."""


class TrainerConfig(ServiceConfig):
    health_port: int = 8091


class JudgeConfig(ServiceConfig):
    health_port: int = 8092


class RouterConfig(ServiceConfig):
    health_port: int = 8093


class CumulusConfig(Section):
    state_dir: Path = Path(".cumulus")
    """Local state: pid and log files, chDB data, Kafka data and jars, model cache, artifacts."""
    model_cache_dir: Path | None = None
    """Converted offline models; default <state_dir>/models. Stacks sharing it convert once."""
    log_format: str = Field(default="kv", pattern="^(kv|json)$")
    """Structured log lines as key=value (readable) or JSON (for log shippers)."""
    kafka: KafkaConfig = KafkaConfig()
    triton: TritonConfig = TritonConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    gateway: GatewayConfig = GatewayConfig()
    collector: CollectorConfig = CollectorConfig()
    trainer: TrainerConfig = TrainerConfig()
    judge: JudgeConfig = JudgeConfig()
    router: RouterConfig = RouterConfig()

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse.dsn or f"chdb://{(self.state_dir / 'clickhouse').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.state_dir / "models"


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> CumulusConfig:
    """Build the config from defaults, the YAML file and the environment.

    Raises ConfigError naming the source (file or variable), the field and how to fix it.
    """
    env = os.environ if env is None else env
    source, data = _read_yaml(path, env)
    env_data, env_vars = _env_overrides(env)
    merged = _deep_merge(data, env_data)
    try:
        return CumulusConfig.model_validate(merged)
    except ValidationError as exc:
        raise _config_error(exc, source, env_vars) from exc


def _read_yaml(path: str | Path | None, env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    explicit = path or env.get(CONFIG_ENV)
    candidate = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
    if not candidate.exists():
        if explicit:
            raise ConfigError(
                f"config file {candidate} does not exist",
                fix=f"create it, or unset {CONFIG_ENV} / --config to use the built-in defaults",
            )
        return "defaults", {}
    try:
        loaded = yaml.safe_load(candidate.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{candidate}: not valid YAML: {exc}", fix="fix the YAML syntax") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{candidate}: top level must be a mapping", fix="write `section: {field: value}`")
    return str(candidate), loaded


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    data: dict[str, Any] = {}
    names: dict[tuple[str, ...], str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        names[keys] = name
    return data, names


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _config_error(exc: ValidationError, source: str, env_vars: dict[tuple[str, ...], str]) -> ConfigError:
    problems = []
    for err in exc.errors():
        loc = tuple(str(part) for part in err["loc"])
        field = ".".join(loc)
        origin = env_vars.get(loc, source)
        if err["type"] == "extra_forbidden":
            fix = f"remove `{field}` (unknown field; check its spelling against cumulus/config.py)"
        else:
            fix = f"set `{field}` to a valid value"
        problems.append(f"{origin}: {field}: {err['msg']} (fix: {fix})")
    return ConfigError("invalid configuration: " + "; ".join(problems))
