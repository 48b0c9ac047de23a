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
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter

from cumulus import topics
from cumulus.codec import decode_as
from cumulus.consuming import Progress, commit_offsets, fetch_batch, wait_acknowledged
from cumulus.deadletter import dead_letter
from cumulus.errors import EventDecodeError
from cumulus.logs import get_logger
from cumulus.publisher import EventPublisher
from cumulus.v1 import events_pb2
from services.router.core import PRODUCER, Output, Router

log = get_logger("router")
CONSUMER = "router"
INPUTS = (topics.ADAPTERS, topics.VERDICTS, topics.COMMANDS)

RECORDS = Counter("cumulus_router_records", "Input records by topic and outcome.", ["topic", "outcome"])
TRANSITIONS = Counter("cumulus_router_transitions", "Rollout transitions by target state.", ["to_state"])


class RouterWorker:
    """Runs the loop of the module docstring until ``stopping`` is set."""

    def __init__(self, consumer: AIOKafkaConsumer, publisher: EventPublisher, router: Router) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.router = router
        self.progress = Progress()
        """What the loop is stuck on (the readiness check ``routing``), None while it makes progress."""

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            records, offsets = await fetch_batch(self.consumer, timeout_ms=200, max_records=1000)
            if not records:
                continue
            self.publish(self.handle(records))
            if not await wait_acknowledged(
                self.publisher, stopping, self.progress, what="the route tables", log=log
            ):
                return  # left uncommitted: redelivered on the next start
            await commit_offsets(self.consumer, offsets, stopping, log=log)

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
