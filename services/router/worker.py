"""The router's consume -> decide -> publish -> commit loop over adapters, verdicts and commands.

An aiokafka consumer with manual commits, like the judge and the collector (Faust would ack an
event before what its agent published was acknowledged: see services/judge/worker.py). Per batch:
decode each record (undecodable ones are dead-lettered and skipped), hand it to the ``Router``,
run every gate once, publish the route tables and rollout events that came out, wait until Kafka
has acknowledged them, then commit the batch's offsets. A crash before the commit redelivers the
batch: a redelivered adapter event maps onto its existing rollout, a redelivered command is a no-op
or repeats an idempotent one, and verdicts only count in memory (see services/router/state.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from prometheus_client import Counter

from cumulus import topics
from cumulus.codec import decode_as
from cumulus.deadletter import dead_letter
from cumulus.errors import EventDecodeError
from cumulus.logs import get_logger
from cumulus.publisher import EventPublisher
from cumulus.v1 import events_pb2
from services.router.core import PRODUCER, Output, Router

log = get_logger("router")
CONSUMER = "router"
INPUTS = (topics.ADAPTERS, topics.VERDICTS, topics.COMMANDS)
_RETRY_S = (0.5, 1.0, 2.0, 5.0)

RECORDS = Counter("cumulus_router_records", "Input records by topic and outcome.", ["topic", "outcome"])
TRANSITIONS = Counter("cumulus_router_transitions", "Rollout transitions by target state.", ["to_state"])


async def start_consumer(
    bootstrap_servers: str, group_id: str, stopping: asyncio.Event
) -> AIOKafkaConsumer | None:
    """A started consumer of the router's inputs; retries while Kafka is down, None if stopped."""
    attempt = 0
    while not stopping.is_set():
        consumer = AIOKafkaConsumer(
            *(spec.name for spec in INPUTS),
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id="router",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            return consumer
        except kafka_errors.KafkaError:
            await consumer.stop()
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), _RETRY_S[min(attempt, len(_RETRY_S) - 1)])
    return None


class RouterWorker:
    """Runs the loop of the module docstring until ``stopping`` is set."""

    def __init__(self, consumer: AIOKafkaConsumer, publisher: EventPublisher, router: Router) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.router = router
        self.waiting_for: str | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=1000)
            records = [record for part in batches.values() for record in part]
            if not records:
                continue
            self.publish(self.handle(records))
            if not await self.acknowledged(stopping):
                return  # left uncommitted: redelivered on the next start
            await self._commit({tp: part[-1].offset + 1 for tp, part in batches.items() if part}, stopping)

    def handle(self, records: list[Any]) -> list[Output]:
        """Apply one batch to the router; the outputs to publish, gates evaluated once at the end."""
        outputs: list[Output] = []
        for record in records:
            try:
                if record.topic == topics.VERDICTS.name:
                    self.router.on_verdict(decode_as(events_pb2.Verdict, record.value, topic=record.topic))
                elif record.topic == topics.ADAPTERS.name:
                    outputs += self.router.on_adapter(decode_as(events_pb2.AdapterEvent, record.value))
                else:
                    outputs += self.router.on_command(decode_as(events_pb2.RolloutCommand, record.value))
                RECORDS.labels(record.topic, "handled").inc()
            except EventDecodeError as exc:
                RECORDS.labels(record.topic, "dead_lettered").inc()
                log.warning("record.dead_lettered", topic=record.topic, offset=record.offset, reason=str(exc))
                self.publisher.publish(
                    topics.DEADLETTER,
                    dead_letter(record, consumer=CONSUMER, producer=PRODUCER, reason=str(exc)),
                )
        return outputs + self.router.evaluate()

    def publish(self, outputs: list[Output]) -> None:
        for output in outputs:
            self.publisher.publish(output.topic, output.event)
            if isinstance(output.event, events_pb2.RolloutEvent):
                TRANSITIONS.labels(output.event.to_state).inc()

    async def acknowledged(self, stopping: asyncio.Event) -> bool:
        """Wait until Kafka has acknowledged everything published; False if stopping first."""
        while not await self.publisher.flush(timeout_s=5.0):
            self.waiting_for = "Kafka has not acknowledged the route tables yet"
            log.warning("router.waiting", reason=self.waiting_for, spool_depth=self.publisher.spool_depth)
            if stopping.is_set():
                return False
        self.waiting_for = None
        return True

    async def _commit(self, offsets: dict[TopicPartition, int], stopping: asyncio.Event) -> None:
        attempt = 0
        while not stopping.is_set():
            try:
                await self.consumer.commit(offsets)
                return
            except kafka_errors.CommitFailedError as exc:  # a rebalance took the partitions: redelivered
                log.warning("router.commit_lost", error=str(exc))
                return
            except kafka_errors.KafkaError as exc:
                attempt += 1
                log.warning("router.commit_retry", error=repr(exc), attempt=attempt)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), _RETRY_S[min(attempt, len(_RETRY_S) - 1)])
