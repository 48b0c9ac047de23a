"""The one consume runtime: fetch a batch -> the service's handler -> Kafka acknowledged -> commit.

A consuming service (judge, router, trainer) is a ``BatchHandler``: it does one batch's work and
publishes what comes of it. ``KafkaRuntime`` drives it the way a model server drives a model class:

1. start the service's publisher and report Kafka's reachability to readiness;
2. start the consumer (manual commits, ``earliest``), retrying while Kafka is down;
3. per batch: fetch it with the offsets that commit exactly it, hand it to the handler, wait until
   Kafka has acknowledged everything the handler published (readiness says so meanwhile), commit;
4. on SIGTERM the batch in hand finishes (or stays uncommitted), then consumer and publisher close.

So a batch's offsets are committed only after its side effects are durable: a crash anywhere
before the commit redelivers the batch rather than losing it. The steps are also usable alone:
the collector's exactly-once sink keeps its own note/insert/commit protocol over
``start_consumer`` and the backoff helpers. Log events are named after the logger's service
(``judge.commit_lost``, ``router.waiting``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors

from cumulus.kafka import security
from cumulus.kafka.publisher import EventPublisher
from cumulus.logs import StructuredLogger
from cumulus.service import ServiceContext, kafka_check

RETRY_S = (0.5, 1.0, 2.0, 5.0)
"""Waits between tries while something (Kafka, a model) is down: short at first, then 5 s each."""

_FLUSH_TIMEOUT_S = 5.0


def backoff_s(attempt: int) -> float:
    """How long to wait after failed try ``attempt`` (counted from 0); the last wait repeats after that."""
    return RETRY_S[min(attempt, len(RETRY_S) - 1)]


async def stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stopping`` is set first; True if it was (then stop retrying)."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def start_consumer(
    *topic_names: str,
    bootstrap_servers: str,
    group_id: str,
    client_id: str,
    stopping: asyncio.Event,
    listener: ConsumerRebalanceListener | None = None,
    **consumer_options: Any,
) -> AIOKafkaConsumer | None:
    """A started consumer of ``topic_names`` in ``group_id``; retries while Kafka is down, None if stopped.

    Manual commits (the loop commits after the acknowledgements, never aiokafka on a timer) and
    ``earliest``: a group with no committed offset yet must not skip what was published before
    it first joined. With a rebalance ``listener`` the topics are subscribed through it (the
    collector reads its pending notes on assignment). ``consumer_options`` go to
    ``AIOKafkaConsumer`` as they are.
    """
    attempt = 0
    while not stopping.is_set():
        consumer = AIOKafkaConsumer(
            *(topic_names if listener is None else ()),
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **security.client_kwargs(),
            **consumer_options,
        )
        if listener is not None:
            consumer.subscribe(list(topic_names), listener=listener)
        try:
            await consumer.start()
            return consumer
        except kafka_errors.KafkaError:
            await consumer.stop()  # a failed start leaves a client behind: close it before the next
            if await stopped_within(stopping, backoff_s(attempt)):
                break
            attempt += 1
    return None


async def fetch_batch(
    consumer: AIOKafkaConsumer, *, timeout_ms: int, max_records: int
) -> tuple[list[Any], dict[TopicPartition, int]]:
    """One ``getmany``: its records, and the offsets that commit exactly those (last + 1 per partition).

    Commit the offsets only once every one of the records is done: they cover the whole batch.
    """
    batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    records = [record for part in batches.values() for record in part]
    offsets = {tp: part[-1].offset + 1 for tp, part in batches.items() if part}
    return records, offsets


class Progress:
    """What a consume loop is stuck on, for its readiness check; None while it makes progress.

    One holder per loop, so every step that can stall (acknowledgements, a model that is down)
    reports through the same ``waiting_for`` and the readiness check reads just that.
    """

    def __init__(self) -> None:
        self.waiting_for: str | None = None

    async def check(self) -> str | None:
        """A readiness check (``ServiceContext.readiness``): the reason the loop is stuck, if it is."""
        return self.waiting_for


async def wait_acknowledged(
    publisher: EventPublisher,
    stopping: asyncio.Event,
    progress: Progress,
    *,
    what: str,
    log: StructuredLogger,
) -> bool:
    """Wait until Kafka has acknowledged everything published; False if stopping first.

    While it waits, ``progress`` says "Kafka has not acknowledged <what> yet" (readiness goes red)
    and each unanswered flush is logged with the spool depth. False means the batch must be left
    uncommitted: it is redelivered on the next start.
    """
    while not await publisher.flush(timeout_s=_FLUSH_TIMEOUT_S):
        progress.waiting_for = f"Kafka has not acknowledged {what} yet"
        log.warning(f"{log.service}.waiting", reason=progress.waiting_for, spool_depth=publisher.spool_depth)
        if stopping.is_set():
            return False
    progress.waiting_for = None
    return True


async def commit_offsets(
    consumer: AIOKafkaConsumer,
    offsets: dict[TopicPartition, int],
    stopping: asyncio.Event,
    *,
    log: StructuredLogger,
) -> bool:
    """Commit ``offsets`` (each the next offset to read: last processed + 1); True if committed.

    Callers pass only offsets of records whose work is done and acknowledged, so this never
    commits past an unprocessed record. It tries once even when ``stopping`` is already set: the
    batch in hand has finished, and committing it spares a restart redoing it (the judge would
    record its grades twice). Errors Kafka may get over are retried with backoff until stopping;
    a ``CommitFailedError`` means a rebalance gave the partitions to another member, which starts
    from the last commit and so gets the batch again: retrying could only fail again.
    """
    attempt = 0
    while True:
        try:
            await consumer.commit(offsets)
            return True
        except kafka_errors.CommitFailedError as exc:
            log.warning(f"{log.service}.commit_lost", error=str(exc))
            return False
        except kafka_errors.KafkaError as exc:
            attempt += 1
            log.warning(f"{log.service}.commit_retry", error=repr(exc), attempt=attempt)
            if await stopped_within(stopping, backoff_s(attempt)):
                return False


class BatchHandler(Protocol):
    """A consuming service's work, driven by ``KafkaRuntime.consume``."""

    progress: Progress
    """What the batch is stuck on; the runtime reports its own waits (acknowledgements) here too."""

    async def handle(self, records: Sequence[Any], stopping: asyncio.Event) -> bool:
        """Do one batch's work and publish its outputs; False when stopping before it was done.

        A batch answered False is left uncommitted (redelivered on the next start). Records the
        handler cannot use go to the dead-letter topic; they never make it raise.
        """
        ...


@dataclass(frozen=True)
class Subscription:
    """What a handler consumes and how its batches are cut."""

    topics: Sequence[str]
    group_id: str
    client_id: str
    max_records: int
    fetch_timeout_ms: int
    outputs: str
    """What a batch publishes, for readiness: "Kafka has not acknowledged <outputs> yet"."""
    consumer_options: Mapping[str, Any] = field(default_factory=dict)
    """Passed to ``AIOKafkaConsumer`` as they are (e.g. the trainer's ``max_poll_interval_ms``)."""


class KafkaRuntime:
    """A consuming service's Kafka lifecycle (see the module docstring); use it as ``async with``.

    Entering starts ``publisher`` and registers the ``kafka`` readiness check; leaving closes the
    publisher. ``consume`` runs a handler until the service stops.
    """

    def __init__(
        self, ctx: ServiceContext, publisher: EventPublisher, *, close_timeout_s: float = 10.0
    ) -> None:
        self.ctx = ctx
        self.publisher = publisher
        self.close_timeout_s = close_timeout_s
        """How long closing waits for Kafka to take what is still queued (the rest stays spooled)."""

    async def __aenter__(self) -> KafkaRuntime:
        await self.publisher.start()
        self.ctx.readiness["kafka"] = kafka_check(self.ctx.config.kafka.bootstrap_servers)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.publisher.close(timeout_s=self.close_timeout_s)

    async def consume(self, subscription: Subscription, handler: BatchHandler) -> None:
        """Run ``handler`` over ``subscription`` until the service is stopping (or Kafka never came)."""
        ctx = self.ctx
        consumer = await start_consumer(
            *subscription.topics,
            bootstrap_servers=ctx.config.kafka.bootstrap_servers,
            group_id=subscription.group_id,
            client_id=subscription.client_id,
            stopping=ctx.stopping,
            **subscription.consumer_options,
        )
        if consumer is None:
            return
        ctx.readiness["progress"] = handler.progress.check
        ctx.log.info(f"{ctx.name}.consuming", topics=list(subscription.topics), group=subscription.group_id)
        try:
            await self._loop(consumer, subscription, handler)
        finally:
            await consumer.stop()

    async def _loop(
        self, consumer: AIOKafkaConsumer, subscription: Subscription, handler: BatchHandler
    ) -> None:
        stopping, log = self.ctx.stopping, self.ctx.log
        while not stopping.is_set():
            records, offsets = await fetch_batch(
                consumer, timeout_ms=subscription.fetch_timeout_ms, max_records=subscription.max_records
            )
            if not records:
                continue
            if not await handler.handle(records, stopping):
                return  # stopping mid-batch: left uncommitted, redelivered on the next start
            acknowledged = await wait_acknowledged(
                self.publisher, stopping, handler.progress, what=subscription.outputs, log=log
            )
            if not acknowledged:
                return  # likewise
            await commit_offsets(consumer, offsets, stopping, log=log)
