"""Sections of the services that turn traffic into adapters: the collector (capture, detection,
export), the trainer, the judge and the router."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from cumulus.config.drift import DriftConfig, DriftResponse
from cumulus.config.infrastructure import Section, ServiceConfig


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
    """A workflow nominated less than this long ago is not nominated again automatically (except a
    retry on growth, below)."""
    retry_growth: float = Field(default=2.0, ge=1.0)
    """A workflow whose last candidate was rejected, failed or rolled back is nominated again once
    its successful live answers reach this multiple of what it had then (2: each time they double)."""
    refresh_growth: float | None = Field(default=2.0, ge=1.0)
    """A workflow served by a promoted adapter is nominated again (its next version) once its
    successful live answers, the audit's included, reach this multiple of what it had when the
    adapter's candidate was nominated. None: only by hand (`cumulus nominate`)."""
    min_examples_per_label: int = Field(default=8, ge=1)
    """Label-shaped workflows: labelled examples (feedback that gives the right answer) wanted per
    label; the candidates API says how many more would reach it (services/collector/sufficiency.py)."""


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
    trust_live_below: float = Field(default=0.8, ge=0, le=1)
    """Where feedback shows live right on fewer than this share of its reviewed answers (over at
    least ``min_reviewed`` of them), live's unreviewed answers are neither trained on nor used as
    the gate's reference: a student learns from the reviewed ones only. 0 always trusts live."""
    min_reviewed: int = Field(default=20, ge=1)
    """Reviewed answers (confirmed or corrected) needed before live's accuracy is judged."""


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
    drift: DriftConfig = DriftConfig()
    prices: dict[str, ModelPrice] = Field(default_factory=_default_prices)
    """Price per Triton model name (live, small); a model without a price costs 0 in estimates."""


class StudentConfig(Section):
    """One rung of the trainer's ladder of students: a base model adapters may be trained on."""

    model: str = Field(min_length=1)
    """Catalog model id (cumulus.models.catalog). ``triton.small_model`` is served as Triton model
    ``small``; any other student as the Triton model named by its id."""
    cost_per_token: float | None = Field(default=None, gt=0)
    """Its cost per token in any unit shared with ``trainer.live_cost_per_token``; None: estimated
    as compute, 2 x its parameters that do arithmetic (cumulus.models.params)."""


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
    gate_min_gold_rows: int = Field(default=20, ge=1)
    """Offline gate: holdout rows with gold (feedback) from which gold decides, not agreement with live."""
    gate_gold_margin: float = Field(default=0.1, ge=0, lt=1)
    """Offline gate on gold: the adapter passes at live's gold accuracy minus this or above."""
    students: tuple[StudentConfig, ...] = ()
    """The ladder, smallest first: a workflow is trained on the first student whose estimated cost
    ratio against live is at least ``min_cost_ratio`` and whose learning curve has not plateaued
    below the gate. Empty: ``triton.small_model`` alone."""
    live_cost_per_token: float | None = Field(default=None, gt=0)
    """The live model's cost per token, in the students' unit; None: estimated as compute."""
    min_cost_ratio: float = Field(default=4.0, ge=1)
    """No student is trained whose estimated cost per request is not this many times under live's."""
    warm_start: bool = True
    """A promoted workflow's next version starts from the promoted adapter's LoRA weights (same
    student, rank and modules; else from scratch), not from a random init."""
    plateau_min_gain: float = Field(default=0.02, ge=0, le=1)
    """A student has plateaued when its last gate score (on more data) beat its best earlier one by
    less than this; the ladder then moves to the next student."""

    @model_validator(mode="after")
    def _one_cost_unit(self) -> TrainerConfig:
        given = [s.cost_per_token is not None for s in self.students] + [self.live_cost_per_token is not None]
        if any(given) and not all(given):
            raise ValueError(
                "trainer.students[].cost_per_token and trainer.live_cost_per_token: give all of them "
                "(one unit) or none (each estimated as compute)"
            )
        models = [s.model for s in self.students]
        if len(set(models)) != len(models):
            raise ValueError("trainer.students: each model may appear once")
        return self


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
    gold_window_s: float = Field(default=3600.0, ge=0, le=7 * 24 * 3600)
    """How long a shadow pair waits (durably, in the store) for its request's feedback: a pair
    joined with feedback within this window gets a gold verdict too (0: only feedback already in)."""
    gold_pending_max: int = Field(default=100_000, ge=0)
    """Most pairs waiting for feedback at once; past it the oldest stop waiting (bounded disk)."""
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
    gold_margin: float | None = Field(default=None, gt=0, lt=1)
    """The paired gold test's non-inferiority margin, in accuracy points (candidate vs live on the
    same requests); None: ``margin``. Separate because an agreement pass rate and an accuracy
    difference are different scales: a lenient agreement margin need not forgive lost accuracy."""
    min_gold_samples_per_step: int = Field(default=30, ge=1)
    """Gold verdicts (shadowed requests with feedback) a step needs before the paired gold test
    decides it instead of agreement with live (services/router/paired.py)."""
    spool_dir: Path | None = None
    """Rollout events and route tables waiting for an unreachable Kafka; default <state_dir>/spool/router."""
    command_key_file: Path | None = None
    """The secret operator commands are signed with (cumulus/kafka/signing.py); the router acts only on
    commands signed with it. Default <state_dir>/command-key, made on first use."""
    command_max_age_s: float = Field(default=300.0, gt=0)
    """A command sent longer ago than this is refused (dead-lettered) as stale: a signed command
    copied off the topic cannot be replayed later (services/router/command_guard.py)."""
    verdict_hold_after_s: float = Field(default=300.0, gt=0)
    """A rollout in shadow or canary with no verdict for this long (the judge is down, traffic
    stopped) holds its step and says why in `cumulus rollout list`; its step's evidence starts
    afresh when verdicts return, so it never advances on evidence from before the gap."""
    verdict_rollback_after_s: float | None = Field(default=None, gt=0)
    """Set: a rollout with no verdict for this long rolls back to its incumbent. None: it holds."""
    audit_share: float = Field(default=0.05, ge=0, le=1)
    """After promotion, the share of a workflow's requests also sent to the live model in shadow
    and graded (the user gets the adapter's answer); the gate keeps running on them, and a
    regression rolls the workflow back to what served before. 0: no audit."""
    audit_min_per_hour: int = Field(default=20, ge=0)
    """Besides ``audit_share``, at least this many audited requests an hour on each gateway, so a
    quiet promoted workflow is still watched."""
    anchor_share: float = Field(default=0.1, ge=0, le=1)
    """While a version is rolled out over another (v2 over v1), the share of the workflow's
    requests also sent to the live model: both versions' answers are graded against live as well,
    and a candidate that agrees with live by more than ``margin`` less than its incumbent does is
    rolled back. 0: v2 is graded against v1 only."""
    drift: DriftResponse = DriftResponse()
    """What a promoted workflow's drift signal does, by severity (services/router/drift.py)."""
    heartbeat_s: float = Field(default=15.0, gt=0)
    """How often the route tables of rollouts in progress are re-published (same version), so a
    gateway can tell a quiet router from an absent one (gateway.route_max_age_s)."""

    @model_validator(mode="after")
    def _steps_increase(self) -> RouterConfig:
        steps = self.canary_steps
        if not steps or any(not 0 < w < 1 for w in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"canary_steps {list(steps)} must be strictly increasing shares in (0, 1)")
        if self.max_samples_per_step < self.min_samples_per_step:
            raise ValueError("max_samples_per_step must be >= min_samples_per_step")
        rollback_s = self.verdict_rollback_after_s
        if rollback_s is not None and rollback_s <= self.verdict_hold_after_s:
            raise ValueError(
                f"verdict_rollback_after_s ({rollback_s}) must be longer than verdict_hold_after_s "
                f"({self.verdict_hold_after_s}): a rollout holds before it rolls back"
            )
        return self
