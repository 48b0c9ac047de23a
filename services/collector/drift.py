"""Drift watch: every promoted workflow's traffic against its adapter's training data.

Every ``collector.drift.interval_s`` each workflow whose latest rollout event is a promotion is
measured (drift_measures.py) over its requests since that promotion (at most ``window_h`` back,
the newest ``max_requests``) against the profile of the adapter's training dataset, read once
from the artifact store. A signal whose severity rose above what was already said about that
adapter is published on ``cumulus.drift.v1``: the router acts on it (services/router/drift.py)
and the capture pipeline stores it in ``drift_signals``, like every other event, exactly once.
A signal only ever rises per adapter: the same drift is not announced every minute, and a new
adapter (a retrained version, a rollback) starts from nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from cumulus.artifacts import ArtifactStore, read_jsonl
from cumulus.config import DriftConfig, ExportConfig
from cumulus.config.drift import severity_name
from cumulus.errors import ArtifactError, CumulusError
from cumulus.kafka import codec, topics
from cumulus.kafka.publisher import EventPublisher
from cumulus.logs import get_logger
from cumulus.v1 import events_pb2
from services.collector import drift_sql
from services.collector.drift_measures import Profile, Served, Signal, measure, profile_of
from services.collector.store import ClickHouseStore

PRODUCER = "collector"
log = get_logger("collector")


@dataclass(frozen=True)
class Promoted:
    """A workflow served by a promoted adapter, and since when."""

    tenant: str
    workflow: str
    adapter_id: str
    dataset_id: str
    since: dt.datetime


@dataclass
class WorkflowDrift:
    """One workflow's latest check: every signal measured, and the ones announced."""

    tenant: str
    workflow: str
    adapter_id: str
    dataset_id: str
    checked_at: str
    requests: int
    signals: list[dict[str, Any]] = field(default_factory=list)
    announced: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class DriftWatch:
    """The periodic check (see the module docstring)."""

    def __init__(
        self,
        db: ClickHouseStore,
        artifacts: ArtifactStore,
        publisher: EventPublisher,
        cfg: DriftConfig,
        export: ExportConfig,
    ) -> None:
        self.db, self.artifacts, self.publisher, self.cfg, self.export = db, artifacts, publisher, cfg, export
        self._profiles: dict[tuple[str, str], Profile] = {}
        self._said: dict[tuple[str, str, str], int] = {}
        """(tenant, adapter, signal) -> the highest severity announced (kept over the table's lag)."""
        self.last_checked: str | None = None
        self.last: list[WorkflowDrift] = []

    async def check_once(self) -> list[WorkflowDrift]:
        """Measure every promoted workflow; announce the signals that rose. Returns the checks."""
        promoted = [Promoted(**row) for row in await drift_sql.promoted(self.db)]
        for key, rank in (await drift_sql.announced(self.db)).items():
            self._said[key] = max(self._said.get(key, 0), rank)
        checks = []
        for p in promoted:
            try:
                checks.append(await self._check(p))
            except (ArtifactError, OSError, ValueError) as exc:
                log.warning(
                    "drift.unmeasurable",
                    tenant=p.tenant,
                    workflow=p.workflow,
                    adapter=p.adapter_id,
                    dataset=p.dataset_id,
                    error=str(exc),
                )
        self.last_checked = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.last = checks
        return checks

    async def _check(self, p: Promoted) -> WorkflowDrift:
        profile = await self._profile(p)
        since = max(p.since, dt.datetime.now(dt.UTC) - dt.timedelta(hours=self.cfg.window_h))
        rows = await drift_sql.window(
            self.db, p.tenant, p.workflow, since, self.cfg.max_requests, p.adapter_id
        )
        window = [
            served
            for r in rows
            if (
                served := Served.from_row(
                    r["messages"], r["tools"], r["response"] if r["by_adapter"] else None
                )
            )
            is not None
        ]
        feedback = await drift_sql.feedback(self.db, p, since, self.export)
        signals = await asyncio.to_thread(measure, profile, window, feedback, self.cfg)
        check = WorkflowDrift(
            p.tenant,
            p.workflow,
            p.adapter_id,
            p.dataset_id,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            len(window),
            [{**asdict(s), "severity": severity_name(s.severity)} for s in signals],
        )
        for signal in signals:
            key = (p.tenant, p.adapter_id, signal.signal)
            if signal.severity > self._said.get(key, 0):
                await self._announce(p, signal)
                self._said[key] = signal.severity
                check.announced.append(signal.signal)
        return check

    async def _profile(self, p: Promoted) -> Profile:
        key = (p.workflow, p.dataset_id)
        if key not in self._profiles:
            folder = self.artifacts.path("datasets", p.workflow, p.dataset_id)
            train, holdout = await asyncio.gather(
                asyncio.to_thread(read_jsonl, folder / "train.jsonl"),
                asyncio.to_thread(read_jsonl, folder / "holdout.jsonl"),
            )
            self._profiles[key] = await asyncio.to_thread(profile_of, p.dataset_id, train, holdout)
        return self._profiles[key]

    async def _announce(self, p: Promoted, signal: Signal) -> None:
        event = events_pb2.DriftSignal(
            meta=codec.new_meta(tenant=p.tenant, workflow=p.workflow, producer=PRODUCER),
            adapter_id=p.adapter_id,
            dataset_id=p.dataset_id,
            signal=signal.signal,
            severity=signal.severity,  # type: ignore[arg-type]
            detail=signal.detail,
            evidence=signal.evidence,
        )
        self.publisher.publish(topics.DRIFT, event)
        delivered = await self.publisher.flush(timeout_s=10.0)
        log.warning(
            "drift.signal",
            tenant=p.tenant,
            workflow=p.workflow,
            adapter=p.adapter_id,
            signal=signal.signal,
            severity=severity_name(signal.severity),
            detail=signal.detail,
            delivered=delivered,
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Check every ``interval_s`` until ``stopping``; a failed check is logged, never fatal."""
        while not stopping.is_set():
            try:
                await self.check_once()
            except CumulusError as exc:
                log.error("drift.failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.cfg.interval_s)
