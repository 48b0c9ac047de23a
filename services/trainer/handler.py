"""The trainer's handler over cumulus.candidates.v1: one candidate at a time, each trained in a child process.

Driven by the consume runtime (cumulus.kafka.runtime) one record per batch. Per candidate, in
partition order:

1. decode it (an undecodable record goes to cumulus.kafka.deadletter.v1);
2. derive its adapter id (stable per candidate, ``adapter_id_for``) and job directory, write the spec;
3. run ``python -m services.trainer.job`` and relay its progress as TRAINING AdapterEvents (at
   most one per ``progress_interval_s``) and on ``GET /status``;
4. publish the outcome: READY or REJECTED (registered, with the offline gate's score) or FAILED
   with the reason (including a child that crashed, was killed or timed out);
5. the runtime waits until Kafka acknowledged the events, then commits the candidate's offset.

Nothing is lost in between: a trainer killed mid-job never committed, so the candidate comes back
on restart; its job resumes from the last checkpoint, and a job whose adapter was already
registered is only announced again. SIGTERM stops the child (which saves a checkpoint) and leaves
the candidate uncommitted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cumulus.artifacts import ArtifactStore
from cumulus.config import CumulusConfig
from cumulus.errors import CumulusError, EventDecodeError
from cumulus.kafka import codec, topics
from cumulus.kafka.deadletter import dead_letter
from cumulus.kafka.publisher import EventPublisher
from cumulus.kafka.runtime import Progress, Subscription
from cumulus.logs import get_logger
from cumulus.v1 import events_pb2
from services.trainer.job import EXIT_INTERRUPTED, RESULT, JobSpec
from services.trainer.recipe_config import DEFAULT_RECIPE

log = get_logger("trainer")
PRODUCER = "trainer"
_STATUS = {
    "READY": events_pb2.ADAPTER_STATUS_READY,
    "REJECTED": events_pb2.ADAPTER_STATUS_REJECTED,
    "FAILED": events_pb2.ADAPTER_STATUS_FAILED,
}
_REPO = Path(__file__).resolve().parents[2]


@dataclass
class JobStatus:
    """What ``GET /status`` shows about the running job."""

    adapter_id: str
    candidate_id: str
    workflow: str
    started_at: float = field(default_factory=time.time)
    phase: str = "starting"
    progress: float = 0.0
    step: int = 0
    total_steps: int = 0
    loss: float | None = None


def adapter_id_for(candidate_id: str, nominated_at: dt.datetime) -> str:
    """``ad-YYYYmmdd-HHMMSS-xxxxxxxx``: sorts by nomination time, and the same for a redelivered candidate."""
    digest = hashlib.sha256(candidate_id.encode()).hexdigest()[:8]
    return f"ad-{nominated_at:%Y%m%d-%H%M%S}-{digest}"


def subscription(config: CumulusConfig) -> Subscription:
    """The trainer's input: nominated workflows, one at a time."""
    return Subscription(
        topics=(topics.CANDIDATES.name,),
        group_id=config.trainer.group_id,
        client_id=PRODUCER,
        # One candidate at a time: its offset is committed only once its outcome is out.
        max_records=1,
        fetch_timeout_ms=500,
        outputs="the adapter events",
        # A job holds its candidate uncommitted, without polling, for as long as it trains.
        consumer_options={"max_poll_interval_ms": int((config.trainer.job_timeout_s + 600) * 1000)},
    )


class TrainerHandler:
    """Runs a job per candidate (see the module docstring); a ``BatchHandler`` of the runtime."""

    def __init__(self, publisher: EventPublisher, config: CumulusConfig) -> None:
        self.publisher = publisher
        self.config = config
        self.trainer = config.trainer
        self.store = ArtifactStore(config.artifacts_dir)
        self.jobs_dir = (self.trainer.jobs_dir or config.state_dir / "trainer" / "jobs").resolve()
        self.progress = Progress()
        """What the loop is stuck on (Kafka not acknowledging), for the readiness check."""
        self.current: JobStatus | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=10)

    def status(self) -> dict[str, Any]:
        """The body of ``GET /status``."""
        return {"job": asdict(self.current) if self.current else None, "recent": list(self.recent)}

    async def handle(self, records: Sequence[Any], stopping: asyncio.Event) -> bool:
        """Train for each candidate record and publish the outcome; False when stopped before one."""
        for record in records:
            if not await self.train(record, stopping):
                return False
        return True

    async def train(self, record: Any, stopping: asyncio.Event) -> bool:
        """Train for one candidate record and publish the outcome; False when stopped before it."""
        try:
            candidate = codec.decode_as(events_pb2.CandidateEvent, record.value, topic=record.topic)
            spec = self._spec(candidate)
        except (EventDecodeError, CumulusError) as exc:
            log.warning("candidate.dead_lettered", offset=record.offset, reason=str(exc)[:300])
            reason = f"unusable candidate: {exc}"
            self.publisher.publish(
                topics.DEADLETTER, dead_letter(record, consumer="trainer", producer=PRODUCER, reason=reason)
            )
            return True
        self.current = JobStatus(spec.adapter_id, spec.candidate_id, spec.workflow)
        self._publish(spec, events_pb2.ADAPTER_STATUS_TRAINING, progress=0.0)
        log.info("job.started", workflow=spec.workflow, adapter=spec.adapter_id, candidate=spec.candidate_id)
        try:
            outcome = await self._run_child(spec, stopping)
        finally:
            self.current = None
        if outcome is None:
            return False
        status = _STATUS.get(str(outcome.get("status")), events_pb2.ADAPTER_STATUS_FAILED)
        self._publish(
            spec,
            status,
            progress=1.0,
            artifact_uri=outcome.get("artifact_uri", ""),
            lora_task_id=int(outcome.get("lora_task_id", 0)),
            version=outcome.get("version", ""),
            offline_score=float(outcome.get("offline_score", 0.0)),
            gate_passed=bool(outcome.get("gate_passed", False)),
            error=outcome.get("error", ""),
            metrics={k: float(v) for k, v in outcome.get("metrics", {}).items()},
        )
        self.recent.appendleft({"adapter_id": spec.adapter_id, "workflow": spec.workflow, **outcome})
        log.info(
            "job.done",
            workflow=spec.workflow,
            adapter=spec.adapter_id,
            status=outcome.get("status"),
            score=outcome.get("offline_score"),
            error=outcome.get("error", "")[:200],
        )
        return True

    def _spec(self, candidate: events_pb2.CandidateEvent) -> JobSpec:
        meta = candidate.meta
        if not candidate.candidate_id or not meta.workflow or not candidate.dataset_uri:
            raise CumulusError("candidate_id, workflow and dataset_uri are required")
        adapter_id = adapter_id_for(candidate.candidate_id, meta.occurred_at.ToDatetime())
        job_dir = self.jobs_dir / adapter_id
        job_dir.mkdir(parents=True, exist_ok=True)
        judge = self.config.judge
        spec = JobSpec(
            candidate_id=candidate.candidate_id,
            adapter_id=adapter_id,
            tenant=meta.tenant,
            workflow=meta.workflow,
            dataset_id=candidate.dataset_id,
            dataset_dir=str(self.store.path_from_uri(candidate.dataset_uri)),
            base_model=candidate.base_model or self.config.triton.small_model,
            recipe=str(Path(self.trainer.recipe or DEFAULT_RECIPE).resolve()),
            artifacts_dir=str(self.store.root),
            models_dir=str(Path(self.config.models_dir).resolve()),
            job_dir=str(job_dir),
            gate={
                "threshold": self.trainer.gate_threshold,
                "max_examples": self.trainer.gate_max_examples,
                "max_new_tokens": self.trainer.gate_max_new_tokens,
                "dtype": self.config.triton.dtype,
                "graders": {
                    "semantic_threshold": judge.semantic_threshold,
                    "json_pass_f1": judge.json_pass_f1,
                    "label_max_chars": judge.label_max_chars,
                    "workflow_graders": dict(judge.graders),
                },
            },
        )
        spec.write(job_dir / "spec.json")
        return spec

    async def _run_child(self, spec: JobSpec, stopping: asyncio.Event) -> dict[str, Any] | None:
        """Run the job process; its outcome, or None when the trainer is stopping."""
        result_path = Path(spec.job_dir) / RESULT
        result_path.unlink(missing_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")])),
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.trainer.job",
            str(Path(spec.job_dir) / "spec.json"),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        relay = asyncio.create_task(self._relay_progress(child, spec))
        stop = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait(
            {relay, stop}, timeout=self.trainer.job_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if relay not in done:
            child.terminate()  # the job saves a checkpoint at its next step and exits
            try:
                await asyncio.wait_for(child.wait(), 60.0)
            except TimeoutError:
                child.kill()
                await child.wait()
            relay.cancel()
        stop.cancel()
        if stop in done:
            log.info(
                "job.stopped", workflow=spec.workflow, adapter=spec.adapter_id, reason="trainer stopping"
            )
            return None
        code = await child.wait()
        if not done:
            return {"status": "FAILED", "error": f"timed out after {self.trainer.job_timeout_s:.0f}s"}
        if code == 0 and result_path.is_file():
            outcome: dict[str, Any] = json.loads(result_path.read_text())
            return outcome
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        hint = " (interrupted)" if code == EXIT_INTERRUPTED else ""
        return {"status": "FAILED", "error": f"the training process {how}{hint}; see the trainer log"}

    async def _relay_progress(self, child: Any, spec: JobSpec) -> None:
        last = 0.0
        assert child.stdout is not None
        async for line in child.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") != "progress" or self.current is None:
                continue
            job = self.current
            job.progress, job.phase = float(message["progress"]), message.get("phase", job.phase)
            job.step, job.total_steps = (
                message.get("step", job.step),
                message.get("total_steps", job.total_steps),
            )
            job.loss = message.get("loss", job.loss)
            if time.monotonic() - last >= self.trainer.progress_interval_s:
                last = time.monotonic()
                metrics = {
                    "step": float(job.step),
                    **({"loss": float(job.loss)} if job.loss is not None else {}),
                }
                self._publish(
                    spec,
                    events_pb2.ADAPTER_STATUS_TRAINING,
                    progress=job.progress,
                    metrics=metrics,
                )
        await child.wait()

    def _publish(self, spec: JobSpec, status: events_pb2.AdapterStatus, **fields: Any) -> None:
        metrics = fields.pop("metrics", None)
        event = events_pb2.AdapterEvent(
            meta=codec.new_meta(tenant=spec.tenant, workflow=spec.workflow, producer=PRODUCER),
            adapter_id=spec.adapter_id,
            candidate_id=spec.candidate_id,
            dataset_id=spec.dataset_id,
            base_model=spec.base_model,
            status=status,
            **fields,
        )
        event.metrics.update(metrics or {})
        self.publisher.publish(topics.ADAPTERS, event)
