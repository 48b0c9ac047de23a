"""Nominating a workflow: export its dataset, record the candidate, tell the trainer.

Used by detection (``nominated_by = auto``) and by ``cumulus nominate`` through the read API
(``manual``). The order is export -> ``candidates`` row -> ``cumulus.candidates.v1`` event, so the
event never points at a dataset that does not exist; a crash between the last two leaves a
candidate the CLI lists but the trainer never heard of (nominate it again by hand).
"""

from __future__ import annotations

import asyncio
import datetime as dt

from cumulus.artifacts import ArtifactStore
from cumulus.config import ExportConfig
from cumulus.errors import InvalidArgument, NotFound
from cumulus.kafka import codec, topics
from cumulus.kafka.publisher import EventPublisher
from cumulus.logs import get_logger
from cumulus.privacy.policy import TenantPrivacy
from cumulus.rollout_states import PROMOTED
from cumulus.v1 import events_pb2
from services.collector.clickhouse.schema import CANDIDATES
from services.collector.export import build_dataset, read_sources, write_dataset
from services.collector.learning import attempts, last_attempts
from services.collector.rows import timestamp
from services.collector.store import ClickHouseStore

PRODUCER = "collector"
log = get_logger("collector")


class Nominator:
    """Turns a (tenant, workflow) into a dataset and a CandidateEvent; one nomination at a time."""

    def __init__(
        self,
        db: ClickHouseStore,
        artifacts: ArtifactStore,
        publisher: EventPublisher,
        cfg: ExportConfig,
        base_model: str,
        privacy: TenantPrivacy | None = None,
    ) -> None:
        self.db, self.artifacts, self.publisher, self.cfg = db, artifacts, publisher, cfg
        self.base_model = base_model
        self.privacy = privacy
        """Each tenant's redaction; None: datasets hold the rows' texts as stored (tests)."""
        self._lock = asyncio.Lock()

    async def nominate(
        self, tenant: str, workflow: str, nominated_by: str, reason: str, evidence: dict[str, float]
    ) -> events_pb2.CandidateEvent:
        """Export, record and publish; raises NotFound (no traffic) or InvalidArgument (too little)."""
        async with self._lock:
            requests, feedback = await read_sources(self.db, tenant, workflow, self.cfg)
            if not requests:
                raise NotFound(
                    f"workflow {workflow!r} of tenant {tenant!r} has no successful live-model requests",
                    fix="check the name with `cumulus workflows`",
                )
            redactor = None
            if self.privacy is not None and self.privacy.mode(tenant) != "none":
                redactor = self.privacy.redactor(tenant)
            dataset = await asyncio.to_thread(build_dataset, requests, feedback, self.cfg, redactor)
            examples = len(dataset.train) + len(dataset.holdout)
            if examples < self.cfg.min_examples:
                raise InvalidArgument(
                    "workflow",
                    f"{workflow!r} has {examples} usable examples, fewer than export.min_examples "
                    f"({self.cfg.min_examples}); dropped: {dict(dataset.counts)}",
                    fix="wait for more traffic, or lower collector.export.min_examples",
                )
            manifest = await asyncio.to_thread(
                write_dataset, self.artifacts, tenant, workflow, dataset, self.base_model, self.cfg
            )
            event = events_pb2.CandidateEvent(
                meta=codec.new_meta(tenant=tenant, workflow=workflow, producer=PRODUCER),
                nominated_by=nominated_by,
                reason=reason,
                evidence=evidence,
                dataset_id=manifest.id,
                dataset_uri=self.artifacts.uri("datasets", workflow, manifest.id),
                train_examples=len(dataset.train),
                holdout_examples=len(dataset.holdout),
                base_model=self.base_model,
            )
            event.parent_adapter_id = await self._serving_adapter(tenant, workflow)
            event.candidate_id = "cand-" + event.meta.event_id[:16]
            await self.db.insert(CANDIDATES, [_row(event)], token=f"candidate:{event.candidate_id}")
            self.publisher.publish(topics.CANDIDATES, event)
            delivered = await self.publisher.flush(timeout_s=10.0)
            log.info(
                "candidate.nominated",
                tenant=tenant,
                workflow=workflow,
                candidate=event.candidate_id,
                dataset=manifest.id,
                train=event.train_examples,
                holdout=event.holdout_examples,
                by=nominated_by,
                delivered=delivered,
            )
            return event

    async def _serving_adapter(self, tenant: str, workflow: str) -> str:
        """The promoted adapter of the workflow's newest attempt, if it is one: the next version's parent."""
        last = last_attempts(await attempts(self.db, tenant, workflow)).get((tenant, workflow))
        return last.adapter_id if last is not None and last.outcome == PROMOTED else ""


def _row(event: events_pb2.CandidateEvent) -> list[object]:
    meta = event.meta
    occurred: dt.datetime = timestamp(meta.occurred_at)
    return [
        event.candidate_id,
        meta.tenant,
        meta.workflow,
        occurred,
        event.nominated_by,
        event.reason,
        dict(event.evidence),
        event.dataset_id,
        event.dataset_uri,
        event.train_examples,
        event.holdout_examples,
        event.base_model,
        event.parent_adapter_id,
    ]
