"""Keeps the RouteBook current from cumulus.routes.v1 (compacted: one RouteTable per (tenant, workflow)).

At start the feed reads the topic from the beginning, so a (re)started gateway knows every route;
``caught_up`` is set once it has read up to the end offsets it saw then (the gateway's readiness).
After that it follows the topic live: a new table is applied as soon as its fetch returns, well
within a second. No consumer group: every gateway replica reads every partition, and nothing is
committed because the topic is replayed from the start on every start anyway.

A record that does not decode is dead-lettered with the reason and skipped; it never stops the feed.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from cumulus.errors import EventDecodeError
from cumulus.kafka import codec, security, topics
from cumulus.kafka.deadletter import dead_letter
from cumulus.logs import get_logger
from cumulus.v1 import events_pb2
from services.gateway.capture import EventSink
from services.gateway.routes import Applied, RouteBook

log = get_logger("gateway")

CONSUMER = "gateway.routes"
_POLL_MS = 100
_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 5.0


class RouteFeed:
    """Consumes cumulus.routes.v1 into a RouteBook until ``stop`` (see the module docstring)."""

    def __init__(self, bootstrap_servers: str, book: RouteBook, sink: EventSink) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.book = book
        self.sink = sink
        self.caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the feed in the background (it retries until Kafka is reachable)."""
        self._task = asyncio.create_task(self._run(), name="route-feed")

    async def stop(self) -> None:
        """Stop consuming and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def readiness(self) -> str | None:
        """Readiness check: None once every route published before start has been read."""
        return None if self.caught_up.is_set() else "route table not read yet from " + topics.ROUTES.name

    async def _run(self) -> None:
        retry_s = _RETRY_MIN_S
        while True:
            consumer = AIOKafkaConsumer(
                topics.ROUTES.name,
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=_POLL_MS,
                **security.client_kwargs(),
            )
            try:
                await consumer.start()
                retry_s = _RETRY_MIN_S
                await self._consume(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("routes.kafka_unavailable", error=f"{type(exc).__name__}: {exc}", retry_s=retry_s)
            finally:
                with contextlib.suppress(KafkaError, OSError):
                    await consumer.stop()
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, _RETRY_MAX_S)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        ends: dict[TopicPartition, int] = {}
        while True:
            batches = await consumer.getmany(timeout_ms=_POLL_MS)
            for records in batches.values():
                for record in records:
                    self._apply(record)
            if not self.caught_up.is_set():
                assigned = consumer.assignment()
                if assigned and not ends:
                    ends = await consumer.end_offsets(list(assigned))
                if ends and await _reached(consumer, ends):
                    self.caught_up.set()
                    log.info("routes.caught_up", workflows=len(self.book))

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:  # a compaction tombstone: the router deletes tables by publishing new ones
            tenant, workflow = codec.decode_key(record.key)
            log.info("routes.tombstone_ignored", tenant=tenant, workflow=workflow)
            return
        try:
            table = codec.decode_as(events_pb2.RouteTable, record.value, topic=record.topic)
        except EventDecodeError as exc:
            log.warning(
                "routes.undecodable", offset=record.offset, partition=record.partition, error=str(exc)
            )
            self.sink.publish(
                topics.DEADLETTER, dead_letter(record, consumer=CONSUMER, producer="gateway", reason=str(exc))
            )
            return
        outcome = self.book.apply(table, appended_ns=record.timestamp * 1_000_000)
        if outcome is Applied.VOUCHED:
            return  # the router's heartbeat: the table in force, still vouched for
        log_at = log.warning if outcome is Applied.CAPPED else log.info
        log_at(
            f"routes.{outcome.value}",
            workflow=table.meta.workflow,
            tenant=table.meta.tenant,
            version=table.version,
            state=table.rollout_state,
            canary=[(w.target.adapter_id, w.weight) for w in table.canary],
            shadow=table.shadow.adapter_id,
        )


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """True when the consumer's position is at or past ``ends`` on every partition."""
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
