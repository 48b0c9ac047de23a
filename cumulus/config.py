"""The one typed configuration of every service and of the CLI.

Sources, later ones winning: the defaults below (a working local stack with nothing to
configure), a YAML file (``--config``, ``$CUMULUS_CONFIG`` or ``./cumulus.yaml``), then
environment variables ``CUMULUS_<SECTION>__<FIELD>`` (e.g. ``CUMULUS_KAFKA__BOOTSTRAP_SERVERS``;
lists and mappings as JSON: ``CUMULUS_ROUTER__CANARY_STEPS="[0.1, 0.5]"``).
Unknown keys are refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    lora_cache_size: int = Field(default=32, ge=1)
    """LoRA adapters the `small` model keeps parsed in memory (least recently used evicted), like
    TensorRT-LLM's host LoRA cache; an evicted adapter is reloaded from the registry or resent."""

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
    """The client-facing gRPC port of cumulus.v1.Gateway (and of the KServe v2 drop-in)."""
    api_keys_file: Path | None = None
    """Hashed API keys -> tenants; default <state_dir>/api-keys.json (written by `cumulus up`)."""
    triton_streams: int = Field(default=4, ge=0, le=64)
    """Long-lived gRPC streams to Triton that all requests share; 0 = a stream per request, which
    costs more CPU but lets Triton cancel a request whose client went away (services/gateway/multiplex.py)."""
    default_max_tokens: int = Field(default=256, ge=1)
    """max_tokens used when a request leaves it 0 (capped by triton.max_new_tokens_cap)."""
    max_messages: int = Field(default=256, ge=1)
    """Most chat messages one request may carry."""
    max_prompt_chars: int = Field(default=200_000, ge=1)
    """Size limit of a request's prompt: all message contents and tool schemas together."""
    max_tools: int = Field(default=64, ge=0)
    """Most tools one request may declare."""
    max_stop_sequences: int = Field(default=8, ge=0)
    """Most stop strings one request may carry (each at most 256 characters)."""
    max_metadata_entries: int = Field(default=32, ge=0)
    """Most metadata entries one request may carry."""
    max_metadata_bytes: int = Field(default=8192, ge=0)
    """Size limit of a request's metadata: UTF-8 bytes of all keys and values together."""
    shadow_concurrency: int = Field(default=4, ge=0)
    """Shadow copies in flight at once; when all slots are busy a shadow copy is skipped, never queued."""
    shadow_timeout_s: float = Field(default=60.0, gt=0)
    """A shadow copy still running after this long is abandoned and graded as a candidate error."""
    drain_grace_s: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long in-flight requests may take to finish before they are cancelled."""
    events_linger_ms: int = Field(default=20, ge=0, le=1000)
    """How long the event producer waits to fill a batch: fewer Kafka requests per event under load.

    Delays an event's delivery by at most this much, never a response."""
    publisher_close_timeout_s: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long the event producer may take to flush (the rest stays in the spool)."""
    spool_dir: Path | None = None
    """Events waiting for Kafka while it is unreachable; default <state_dir>/spool/gateway."""
    max_spool_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    """Bound of the on-disk event spool; once full, new events are dropped (and counted)."""
    feedback_memory: int = Field(default=100_000, ge=0)
    """Recent request ids remembered (tenant, workflow) so Feedback events carry the right workflow."""


class ModelPrice(Section):
    """What one model costs, in USD per 1,000 tokens (for cost and savings estimates only)."""

    prompt_per_1k: float = Field(ge=0)
    completion_per_1k: float = Field(ge=0)


class CaptureConfig(Section):
    """How the collector moves events from Kafka into ClickHouse (services/collector/pipeline.py)."""

    group_id: str = "cumulus-collector"
    """Kafka consumer group; its committed offsets (and pending-batch notes) are the capture's progress."""
    instance_id: str = "collector-0"
    """Static group membership: a restarted collector takes its partitions back without a rebalance.

    Give every replica its own (only with a ClickHouse server; chDB allows one collector)."""
    batch_rows: int = Field(default=1000, ge=1)
    """A partition's batch is inserted once it holds this many rows ..."""
    batch_max_wait_s: float = Field(default=1.0, gt=0, le=60)
    """... or once its oldest record has waited this long (bounds event-to-queryable freshness)."""
    max_batch_rows: int = Field(default=20_000, ge=1)
    """Largest single insert; a backlog is drained in batches of at most this many rows."""
    insert_retry_max_s: float = Field(default=5.0, gt=0)
    """Longest pause between retries of a batch ClickHouse refused (the batch is never skipped)."""
    stop_grace_s: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long the buffered batches may take to be inserted and committed."""
    spool_dir: Path | None = None
    """Dead letters and candidate events waiting for Kafka; default <state_dir>/spool/collector."""

    @model_validator(mode="after")
    def _batch_bounds(self) -> CaptureConfig:
        if self.max_batch_rows < self.batch_rows:
            raise ValueError(f"max_batch_rows {self.max_batch_rows} is below batch_rows {self.batch_rows}")
        return self


class DetectionConfig(Section):
    """When a workflow becomes a fine-tuning candidate (services/collector/detection.py)."""

    enabled: bool = True
    interval_s: float = Field(default=60.0, gt=0)
    """How often every workflow is checked."""
    window_h: float = Field(default=24.0, gt=0)
    """Traffic looked at: the last this many hours."""
    min_requests: int = Field(default=200, ge=1)
    """Enough volume: successful live-model requests in the window."""
    min_template_stability: float = Field(default=0.9, ge=0, le=1)
    """Share of the window's requests that use the workflow's most common prompt template."""
    min_output_consistency: float = Field(default=0.8, ge=0, le=1)
    """Share of answers with the dominant output shape (JSON, tool call or text)."""
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    """Above this the live model itself struggles: not a candidate."""
    min_daily_savings: float = Field(default=1.0, ge=0)
    """USD per day the small model would save at the window's traffic rate (see `prices`)."""
    cooldown_h: float = Field(default=24.0, ge=0)
    """A workflow nominated less than this long ago is not nominated again automatically."""


class ExportConfig(Section):
    """How a candidate's training dataset is built (services/collector/export.py)."""

    max_examples: int = Field(default=5000, ge=1)
    """Most examples (train + holdout) in one dataset: the most recent requests win."""
    min_examples: int = Field(default=20, ge=1)
    """Fewer usable examples than this and no dataset (and no candidate) is produced."""
    holdout_fraction: float = Field(default=0.1, ge=0, lt=1)
    """Share of examples held out for the offline gate, chosen by a hash of the normalised prompt."""
    max_example_chars: int = Field(default=32_000, ge=100)
    """Examples longer than this (prompt and answer together) are skipped."""
    negative_score_below: float = Field(default=0.5, ge=0, le=1)
    """Feedback with a score below this is negative: the request is dropped unless corrected."""
    negative_labels: tuple[str, ...] = ("bad", "negative", "wrong", "incorrect", "thumbs_down")
    """Feedback labels (case-insensitive) that count as negative whatever the score."""
    canonical_tool_calls: bool = True
    """Answers that are tool calls (in any format the graders read) are rewritten as canonical
    ``<tool_call>`` blocks: one format to learn, fewer tokens; graders compare calls, not text."""


def _default_prices() -> dict[str, ModelPrice]:
    return {
        "live": ModelPrice(prompt_per_1k=0.0025, completion_per_1k=0.01),
        "small": ModelPrice(prompt_per_1k=0.0001, completion_per_1k=0.0004),
    }


class CollectorConfig(ServiceConfig):
    health_port: int = 6066
    """Serves the read API (/api/v1/...) next to /healthz, /readyz and /metrics."""
    capture: CaptureConfig = CaptureConfig()
    detection: DetectionConfig = DetectionConfig()
    export: ExportConfig = ExportConfig()
    prices: dict[str, ModelPrice] = Field(default_factory=_default_prices)
    """Price per Triton model name (live, small); a model without a price costs 0 in estimates."""


class TrainerConfig(ServiceConfig):
    """The trainer service (services/trainer/): one LoRA training job per candidate, in a child process."""

    health_port: int = 8091
    """Also serves GET /status: the running job's progress and the last outcomes."""
    group_id: str = "cumulus-trainer"
    """Kafka consumer group; a candidate's offset is committed once its outcome is published."""
    recipe: Path | None = None
    """Training recipe YAML; default services/trainer/configs/lora.yaml."""
    jobs_dir: Path | None = None
    """Job specs, checkpoints (a restarted trainer resumes from them) and results;
    default <state_dir>/trainer/jobs."""
    spool_dir: Path | None = None
    """Adapter events waiting for Kafka while it is unreachable; default <state_dir>/spool/trainer."""
    job_timeout_s: float = Field(default=6 * 3600.0, gt=0)
    """A job running longer is stopped and reported FAILED."""
    progress_interval_s: float = Field(default=5.0, ge=0)
    """Least time between two TRAINING progress events of a job."""
    gate_threshold: float = Field(default=0.7, ge=0, le=1)
    """Offline gate: the mean grade score over the holdout set an adapter needs to be READY."""
    gate_max_examples: int = Field(default=64, ge=1)
    """Offline gate: holdout prompts the adapter answers (the first ones of the holdout file)."""
    gate_max_new_tokens: int = Field(default=256, ge=1)
    """Offline gate: longest answer generated (each is also capped near its live answer's length)."""


GraderName = Literal["label", "json", "tool_call", "semantic", "pairwise"]


class LlmJudgeConfig(Section):
    enabled: bool = False
    """Re-grade the pairs deterministic graders failed with a pairwise LLM judge (both orders)."""
    model: str = Field(default="live", pattern="^(live|small)$")
    """Triton model that judges; its prompt is rendered with triton.live_model's or small_model's template."""
    max_tokens: int = Field(default=4, ge=1, le=64)
    """The judge answers one letter (A, B or T); a few tokens leave room for a leading space or word."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Per question to the judge model."""
    concurrency: int = Field(default=4, ge=1, le=64)
    """Pairs judged at once (two questions each, one per order)."""
    escalate: tuple[GraderName, ...] = ("semantic",)
    """Graders whose failing pairs the LLM judge re-grades (workflows configured `pairwise`: all)."""


class JudgeConfig(ServiceConfig):
    health_port: int = 8092
    graders: dict[str, GraderName] = Field(default_factory=dict)
    """Workflow -> grader; workflows not listed get the grader their live output's shape calls for."""
    semantic_threshold: float = Field(default=0.8, ge=-1.0, le=1.0)
    """`semantic` passes at this MiniLM cosine or above."""
    json_pass_f1: float = Field(default=1.0, ge=0.0, le=1.0)
    """`json` passes at this field-level F1 or above (1.0: every field right)."""
    label_max_chars: int = Field(default=64, ge=1)
    """Detection: a single-line live output up to this long is graded as a `label`."""
    batch_max: int = Field(default=64, ge=1, le=10_000)
    """Most shadow pairs graded (and committed) together."""
    batch_wait_ms: int = Field(default=200, ge=0, le=60_000)
    """How long to wait for a batch to fill before grading what has arrived."""
    group_id: str = "cumulus-judge"
    """Kafka consumer group (offsets are committed only after the verdicts are acknowledged)."""
    store_path: Path | None = None
    """Grades and feedback for calibration; default <state_dir>/judge/judge.sqlite."""
    store_retention_days: float = Field(default=30.0, gt=0)
    spool_dir: Path | None = None
    """Verdicts waiting for Kafka while it is unreachable; default <state_dir>/spool/judge."""
    min_kappa: float = Field(default=0.4, ge=-1.0, le=1.0)
    """Calibration: a grader whose Cohen's kappa with reviewers is below this is flagged."""
    min_position_consistency: float = Field(default=0.8, ge=0.0, le=1.0)
    """Calibration: the LLM judge is flagged when fewer of its two-order answers agree."""
    min_calibration_samples: int = Field(default=20, ge=1)
    """Calibration: reviewed pairs a grader needs before it is judged at all."""
    llm_judge: LlmJudgeConfig = LlmJudgeConfig()

    @model_validator(mode="after")
    def _pairwise_needs_the_llm_judge(self) -> JudgeConfig:
        pairwise = sorted(w for w, g in self.graders.items() if g == "pairwise")
        if pairwise and not self.llm_judge.enabled:
            raise ValueError(
                f"workflows {pairwise} use the `pairwise` grader but judge.llm_judge.enabled is false; "
                "enable it or pick a deterministic grader"
            )
        return self


class RouterConfig(ServiceConfig):
    """The router (services/router/): rollouts of adapters with sequential-test gates and guardrails."""

    health_port: int = 8093
    """Also serves GET /api/v1/rollouts (what `cumulus rollout list` reads)."""
    group_id: str = "cumulus-router"
    """Kafka consumer group for adapters, verdicts and commands (committed after the decisions are acked)."""
    candidate_model: str = "small"
    """Triton model every adapter runs on."""
    shadow_rate: float = Field(default=0.5, gt=0, le=1)
    """Share of a workflow's requests copied to the candidate while it rolls out (the judge's sample)."""
    canary_steps: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5)
    """Candidate traffic share of each canary step, increasing, each in (0, 1); promotion is 100%."""
    margin: float = Field(default=0.1, gt=0, lt=1)
    """Non-inferiority margin: a step advances once the judge pass rate is shown >= 1 - margin."""
    alpha: float = Field(default=0.05, gt=0, lt=1)
    """Error level of each always-valid test (false advance, false inferiority)."""
    min_samples_per_step: int = Field(default=100, ge=1)
    """Verdicts a step needs before it may advance, whatever the test says."""
    max_samples_per_step: int = Field(default=5000, ge=1)
    """A step still undecided after this many verdicts rolls back as inconclusive."""
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    """Guardrail: candidate error share (verdict.candidate_error) above this rolls back."""
    max_p95_latency_ratio: float = Field(default=2.0, gt=0)
    """Guardrail: candidate p95 latency above this multiple of the live model's rolls back."""
    guardrail_min_samples: int = Field(default=20, ge=1)
    """Verdicts in a step before the guardrails are checked."""
    spool_dir: Path | None = None
    """Rollout events and route tables waiting for an unreachable Kafka; default <state_dir>/spool/router."""

    @model_validator(mode="after")
    def _steps_increase(self) -> RouterConfig:
        steps = self.canary_steps
        if not steps or any(not 0 < w < 1 for w in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"canary_steps {list(steps)} must be strictly increasing shares in (0, 1)")
        if self.max_samples_per_step < self.min_samples_per_step:
            raise ValueError("max_samples_per_step must be >= min_samples_per_step")
        return self


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
            fix = f"remove `{field}` (unknown field; check its spelling against cumulus/config.py)"
        else:
            fix = f"set `{field}` to a valid value"
        problems.append(f"{origin}: {field}: {err['msg']} (fix: {fix})")
    return ConfigError("invalid configuration: " + "; ".join(problems))
