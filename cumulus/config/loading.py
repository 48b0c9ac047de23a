"""The whole configuration (:class:`CumulusConfig`) and how it is loaded: defaults, YAML file, environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from cumulus.config.infrastructure import (
    ClickHouseConfig,
    GatewayConfig,
    KafkaConfig,
    LiveEndpointConfig,
    Section,
    TritonConfig,
)
from cumulus.config.pipeline import CollectorConfig, JudgeConfig, RouterConfig, StudentConfig, TrainerConfig
from cumulus.config.privacy import PrivacyConfig
from cumulus.errors import ConfigError
from cumulus.operators import TOKEN_ENV
from cumulus.tls import ClientTLS, LocalPKI, ServerTLS

ENV_PREFIX = "CUMULUS_"
CONFIG_ENV = "CUMULUS_CONFIG"
DEFAULT_CONFIG_FILE = "cumulus.yaml"
LIVE_TRITON_MODEL = "live"
SMALL_TRITON_MODEL = "small"
"""The Triton model of ``triton.small_model``, the first student's base."""


class CumulusConfig(Section):
    state_dir: Path = Path(".cumulus")
    """Local state: pid and log files, chDB data, Kafka data and jars, model cache, artifacts."""
    model_cache_dir: Path | None = None
    """Converted offline models; default <state_dir>/models. Stacks sharing it convert once."""
    log_format: str = Field(default="kv", pattern="^(kv|json)$")
    """Structured log lines as key=value (readable) or JSON (for log shippers)."""
    kafka: KafkaConfig = KafkaConfig()
    triton: TritonConfig = TritonConfig()
    live: LiveEndpointConfig = LiveEndpointConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    gateway: GatewayConfig = GatewayConfig()
    collector: CollectorConfig = CollectorConfig()
    trainer: TrainerConfig = TrainerConfig()
    judge: JudgeConfig = JudgeConfig()
    router: RouterConfig = RouterConfig()
    privacy: PrivacyConfig = PrivacyConfig()

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse.dsn or f"chdb://{(self.state_dir / 'clickhouse').resolve()}"

    @property
    def api_keys_path(self) -> Path:
        """The hashed tenant API keys (``gateway.api_keys_file``, default <state_dir>/api-keys.json)."""
        return self.gateway.api_keys_file or self.state_dir / "api-keys.json"

    @property
    def command_key_file(self) -> Path:
        return self.router.command_key_file or self.state_dir / "command-key"

    @property
    def redaction_key_file(self) -> Path:
        return self.privacy.key_file or self.state_dir / "redaction-key"

    @property
    def receipts_dir(self) -> Path:
        return self.privacy.receipts_dir or self.state_dir / "receipts"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.state_dir / "models"

    @property
    def ladder(self) -> tuple[StudentConfig, ...]:
        """The students adapters may be trained on, smallest first (``trainer.students``)."""
        return self.trainer.students or (StudentConfig(model=self.triton.small_model),)

    def triton_model_for(self, base_model: str) -> str:
        """The Triton model serving adapters of ``base_model``: ``small``, or a student's own id."""
        # An adapter event naming no base (older trainers) is on the first student's.
        return SMALL_TRITON_MODEL if base_model in ("", self.triton.small_model) else base_model

    @property
    def served_models(self) -> dict[str, str]:
        """Triton model name -> catalog model id of every model Triton serves: live and each student."""
        served = {LIVE_TRITON_MODEL: self.triton.live_model, SMALL_TRITON_MODEL: self.triton.small_model}
        served.update({self.triton_model_for(s.model): s.model for s in self.ladder})
        return served

    @property
    def local_pki(self) -> LocalPKI:
        return LocalPKI(self.state_dir / "tls")

    @property
    def gateway_server_tls(self) -> ServerTLS | None:
        """What the gateway's gRPC port serves with: the configured files, else the local PKI if chosen."""
        gw = self.gateway
        if gw.tls_cert_file and gw.tls_key_file:
            return ServerTLS(gw.tls_cert_file, gw.tls_key_file, gw.tls_client_ca_file)
        return self.local_pki.server() if self.local_pki.mode != "off" else None

    @property
    def gateway_client_tls(self) -> ClientTLS | None:
        """How the CLI, the demo and the benches reach the gateway (None = plaintext)."""
        gw = self.gateway
        if gw.tls_ca_file:
            return ClientTLS(gw.tls_ca_file, gw.tls_client_cert_file, gw.tls_client_key_file)
        return self.local_pki.client() if self.local_pki.mode != "off" else None

    @model_validator(mode="after")
    def _tls_pairs(self) -> CumulusConfig:
        gw = self.gateway
        for cert, key, name in (
            (gw.tls_cert_file, gw.tls_key_file, "gateway.tls_cert_file and gateway.tls_key_file"),
            (
                gw.tls_client_cert_file,
                gw.tls_client_key_file,
                "gateway.tls_client_cert_file and tls_client_key_file",
            ),
        ):
            if (cert is None) != (key is None):
                raise ValueError(f"{name} are set together or not at all")
        if gw.tls_client_ca_file and not gw.tls_cert_file:
            raise ValueError(
                "gateway.tls_client_ca_file (mutual TLS) needs gateway.tls_cert_file and tls_key_file"
            )
        return self

    @model_validator(mode="after")
    def _router_heard_in_time(self) -> CumulusConfig:
        if self.gateway.route_max_age_s <= 2 * self.router.heartbeat_s:
            raise ValueError(
                f"gateway.route_max_age_s ({self.gateway.route_max_age_s}) must exceed twice "
                f"router.heartbeat_s ({self.router.heartbeat_s}), or a live router looks absent"
            )
        return self

    @model_validator(mode="after")
    def _students_served(self) -> CumulusConfig:
        clash = {s.model for s in self.ladder} & {LIVE_TRITON_MODEL, SMALL_TRITON_MODEL}
        if clash:
            raise ValueError(f"trainer.students: {sorted(clash)} is a Triton model name, not a catalog id")
        return self


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
        # Not settings: which file to read, and a client's own credential (cumulus/operators.py).
        if not name.startswith(ENV_PREFIX) or name in (CONFIG_ENV, TOKEN_ENV):
            continue
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = _env_value(name, value)
        names[keys] = name
    return data, names


def _env_value(name: str, value: str) -> Any:
    """A variable's value: lists and mappings as JSON (``[0.1, 0.5]``), anything else as text."""
    if not value.lstrip().startswith(("[", "{")):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        example = f'{name}="[0.1, 0.5]"'
        raise ConfigError(f"{name}: not valid JSON: {exc}", fix=f"write it as JSON, e.g. {example}") from exc


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
            fix = f"remove `{field}` (unknown field; check its spelling against cumulus/config/)"
        else:
            fix = f"set `{field}` to a valid value"
        problems.append(f"{origin}: {field}: {err['msg']} (fix: {fix})")
    return ConfigError("invalid configuration: " + "; ".join(problems))
