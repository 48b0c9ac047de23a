"""The trainer's handler over cumulus.candidates.v1: one candidate at a time, each trained in a child process.

Driven by the consume runtime (cumulus.kafka.runtime) one record per batch. Per candidate, in
partition order:

1. decode it (an undecodable record goes to cumulus.kafka.deadletter.v1);
2. derive its adapter id (stable per candidate, ``adapter_id_for``) and job directory, pick the
   student it trains (ladder.py; none qualifies: REJECTED untrained, with the reason), write the spec;
3. run ``python -m services.trainer.job`` (process.py) and relay its progress as TRAINING
   AdapterEvents (at most one per ``progress_interval_s``) and on ``GET /status``;
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
import functools
import hashlib
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cumulus.artifacts import ArtifactStore
from cumulus.config import CumulusConfig
from cumulus.errors import ArtifactError, CumulusError, EventDecodeError
from cumulus.kafka import codec, topics
from cumulus.kafka.deadletter import dead_letter
from cumulus.kafka.publisher import EventPublisher
from cumulus.kafka.runtime import Progress, Subscription
from cumulus.logs import get_logger
from cumulus.v1 import events_pb2
from services.trainer.erasures import erased_while_training, erasure_records, tainted_by_erasure
from services.trainer.job import JobSpec
from services.trainer.ladder import StudentPicker
from services.trainer.process import JobStatus, run_job
from services.trainer.recipe_config import DEFAULT_RECIPE

log = get_logger("trainer")
PRODUCER = "trainer"
_STATUS = {
    "READY": events_pb2.ADAPTER_STATUS_READY,
    "REJECTED": events_pb2.ADAPTER_STATUS_REJECTED,
    "FAILED": events_pb2.ADAPTER_STATUS_FAILED,
}


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
        self._announced = 0.0
        self.recent: deque[dict[str, Any]] = deque(maxlen=10)
        self.students = StudentPicker(config)
        self.identity = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}
        """Which trainer answers ``GET /status``: an operator must never read another one's job."""

    def status(self) -> dict[str, Any]:
        """The body of ``GET /status``."""
        job = asdict(self.current) if self.current else None
        return {"trainer": self.identity, "job": job, "recent": list(self.recent)}

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
            spec = await asyncio.to_thread(self._spec, candidate)
        except (EventDecodeError, CumulusError) as exc:
            log.warning("candidate.dead_lettered", offset=record.offset, reason=str(exc)[:300])
            reason = f"unusable candidate: {exc}"
            self.publisher.publish(
                topics.DEADLETTER, dead_letter(record, consumer="trainer", producer=PRODUCER, reason=reason)
            )
            return True
        if not spec.base_model:  # no student qualifies: say why, train nothing
            reason = spec.student.get("reason", "no student")
            self._publish(spec, events_pb2.ADAPTER_STATUS_REJECTED, progress=1.0, error=reason)
            log.info("job.no_student", tenant=spec.tenant, workflow=spec.workflow, reason=reason[:300])
            return True
        job = self.current = JobStatus(spec.adapter_id, spec.candidate_id, spec.workflow)
        self._publish(spec, events_pb2.ADAPTER_STATUS_TRAINING, progress=0.0)
        log.info("job.started", workflow=spec.workflow, adapter=spec.adapter_id, candidate=spec.candidate_id)
        try:
            self._announced = 0.0
            progressed = functools.partial(self._progressed, spec)
            outcome = await run_job(spec, job, stopping, self.trainer.job_timeout_s, progressed)
        finally:
            if self.current is job:
                self.current = None
        if outcome is None:
            return False
        if outcome.get("status") == "READY":
            erased = erased_while_training(spec.dataset_id, spec.dataset_dir, spec.dataset_erasures)
            if erased:
                outcome = {**outcome, "status": "REJECTED", "gate_passed": False, "error": erased}
        status = _STATUS.get(str(outcome.get("status")), events_pb2.ADAPTER_STATUS_FAILED)
        self._publish(
            spec,
            status,
            progress=1.0,
            artifact_uri=outcome.get("artifact_uri", ""),
            manifest_sha256=outcome.get("manifest_sha256", ""),
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
        if (job_dir / "spec.json").is_file():  # redelivered: the same student, whatever came since
            return JobSpec.read(job_dir / "spec.json")
        job_dir.mkdir(parents=True, exist_ok=True)
        dataset_dir = self.store.path_from_uri(candidate.dataset_uri)
        choice = self.students.pick(meta.tenant, meta.workflow, dataset_dir, candidate.base_model)
        log.info(
            "student.chosen",
            tenant=meta.tenant,
            workflow=meta.workflow,
            adapter=adapter_id,
            student=choice.model or "",
            reason=choice.reason[:300],
        )
        judge = self.config.judge
        spec = JobSpec(
            candidate_id=candidate.candidate_id,
            adapter_id=adapter_id,
            tenant=meta.tenant,
            workflow=meta.workflow,
            dataset_id=candidate.dataset_id,
            dataset_dir=str(dataset_dir),
            base_model=choice.model or "",
            student={"reason": choice.reason, "cost_ratios": choice.cost_ratios},
            init_adapter=self._warm_start_from(candidate, choice.model or ""),
            parent_adapter_id=candidate.parent_adapter_id,
            dataset_erasures=len(erasure_records(dataset_dir) or []),
            recipe=str(Path(self.trainer.recipe or DEFAULT_RECIPE).resolve()),
            artifacts_dir=str(self.store.root),
            models_dir=str(Path(self.config.models_dir).resolve()),
            job_dir=str(job_dir),
            gate={
                "threshold": self.trainer.gate_threshold,
                "max_examples": self.trainer.gate_max_examples,
                "max_new_tokens": self.trainer.gate_max_new_tokens,
                "min_gold_rows": self.trainer.gate_min_gold_rows,
                "gold_margin": self.trainer.gate_gold_margin,
                "dtype": self.config.triton.serving_dtype,
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

    def _warm_start_from(self, candidate: events_pb2.CandidateEvent, student: str) -> str:
        """The folder of the version this candidate replaces, where the new one may start from it:
        ``trainer.warm_start`` on, the parent verified in the store and trained on the same student."""
        parent, workflow = candidate.parent_adapter_id, candidate.meta.workflow
        if not (self.trainer.warm_start and parent and student):
            return ""
        try:
            manifest = self.store.verify("adapters", workflow, parent)
        except ArtifactError as exc:
            log.warning("job.no_warm_start", workflow=workflow, parent=parent, reason=exc.message)
            return ""
        if manifest.fields.get("base_model") != student:
            log.info("job.no_warm_start", workflow=workflow, parent=parent, reason="another student")
            return ""
        tainted = tainted_by_erasure(self.store, workflow, parent)
        if tainted:  # its weights may hold erased rows: the new version starts fresh
            log.warning("job.no_warm_start", workflow=workflow, parent=parent, reason=tainted)
            return ""
        return str(self.store.path("adapters", workflow, parent))

    def _progressed(self, spec: JobSpec, job: JobStatus) -> None:
        """Announce ``job``'s progress, at most once per ``progress_interval_s``."""
        if time.monotonic() - self._announced < self.trainer.progress_interval_s:
            return
        self._announced = time.monotonic()
        metrics = {"step": float(job.step), **({"loss": float(job.loss)} if job.loss is not None else {})}
        self._publish(spec, events_pb2.ADAPTER_STATUS_TRAINING, progress=job.progress, metrics=metrics)

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
