"""What the demo sees of the loop: the events the services publish, read straight from Kafka.

The demo never asks a service how it is doing; it watches the same topics the services use to
talk to each other (candidates, adapters, shadow pairs, verdicts, rollouts, drift), from the moment it
starts, keeping only its own tenant's events. That is also what the report is computed from.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from cumulus.errors import EventDecodeError
from cumulus.kafka import codec, security, topics
from cumulus.rollout_states import PROMOTED, ROLLED_BACK
from cumulus.v1 import events_pb2

WATCHED = (
    topics.CANDIDATES,
    topics.ADAPTERS,
    topics.SHADOW,
    topics.VERDICTS,
    topics.ROLLOUTS,
    topics.DRIFT,
)
TRAINED = (
    events_pb2.ADAPTER_STATUS_READY,
    events_pb2.ADAPTER_STATUS_REJECTED,
    events_pb2.ADAPTER_STATUS_FAILED,
)


@dataclass
class Seen:
    """Events of one tenant, each with the wall time the demo first saw it."""

    candidates: list[tuple[float, events_pb2.CandidateEvent]] = field(default_factory=list)
    adapters: dict[str, events_pb2.AdapterEvent] = field(default_factory=dict)
    adapter_ready_at: dict[str, float] = field(default_factory=dict)
    pairs: dict[str, events_pb2.ShadowPair] = field(default_factory=dict)
    verdicts: dict[str, events_pb2.Verdict] = field(default_factory=dict)
    """Agreement verdicts (against live) by pair id."""
    gold_verdicts: dict[str, events_pb2.Verdict] = field(default_factory=dict)
    """Gold verdicts (both models against the request's feedback) by pair id."""
    rollouts: list[tuple[float, events_pb2.RolloutEvent]] = field(default_factory=list)
    drift: list[tuple[float, events_pb2.DriftSignal]] = field(default_factory=list)

    def rollout_states(self, adapter_id: str) -> list[events_pb2.RolloutEvent]:
        return [event for _, event in self.rollouts if event.adapter_id == adapter_id]

    def final_state(self, adapter_id: str) -> str:
        states = self.rollout_states(adapter_id)
        return states[-1].to_state if states else ""

    def finished(self, adapter_id: str) -> bool:
        """The adapter's rollout ended: promoted or rolled back."""
        return self.final_state(adapter_id) in (PROMOTED, ROLLED_BACK)

    def outcome(self, candidate_id: str = "") -> events_pb2.AdapterEvent | None:
        """The trainer's final word (ready, rejected or failed) on the adapter of ``candidate_id``
        ('': of any nominated candidate; the demo's forced adapter has none)."""
        return next(
            (
                a
                for a in self.adapters.values()
                if a.status in TRAINED and a.candidate_id and candidate_id in ("", a.candidate_id)
            ),
            None,
        )

    def state_reached_at(self, adapter_id: str, state: str) -> float | None:
        return next((t for t, e in self.rollouts if e.adapter_id == adapter_id and e.to_state == state), None)


class Observer:
    """Consumes the watched topics from their current end; ``seen`` fills in as events arrive."""

    def __init__(
        self, bootstrap: str, tenant: str, on_event: Callable[[str, object], None] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.tenant = tenant
        self.on_event = on_event
        self.seen = Seen()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Positions at the end of every partition before returning: nothing later is missed."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            **security.client_kwargs(),
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # a fresh client knows no topics yet
            partitions = [
                TopicPartition(spec.name, p)
                for spec in WATCHED
                for p in sorted(consumer.partitions_for_topic(spec.name) or ())
            ]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)  # resolve the lazy seek now, before traffic starts
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    self._take(tp.topic, record.value)

    def _take(self, topic: str, value: bytes | None) -> None:
        try:
            event = codec.decode_event(topic, value)
        except EventDecodeError:
            return  # not ours to judge: the services dead-letter what they cannot read
        meta = getattr(event, "meta", None)
        if meta is None or meta.tenant != self.tenant:
            return
        now, seen = time.time(), self.seen
        if isinstance(event, events_pb2.CandidateEvent):
            seen.candidates.append((now, event))
        elif isinstance(event, events_pb2.AdapterEvent):
            seen.adapters[event.adapter_id] = event
            if event.status == events_pb2.ADAPTER_STATUS_READY:
                seen.adapter_ready_at.setdefault(event.adapter_id, now)
        elif isinstance(event, events_pb2.ShadowPair):
            seen.pairs[event.pair_id] = event
        elif isinstance(event, events_pb2.Verdict):
            (seen.gold_verdicts if event.reference == "gold" else seen.verdicts)[event.pair_id] = event
        elif isinstance(event, events_pb2.RolloutEvent):
            seen.rollouts.append((now, event))
        elif isinstance(event, events_pb2.DriftSignal):
            seen.drift.append((now, event))
        if self.on_event:
            self.on_event(topic, event)
