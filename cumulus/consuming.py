"""The plumbing of a consume -> publish -> commit loop with manual commits (judge, router).

Such a loop commits a batch's offsets only after Kafka has acknowledged everything the batch
published, so a crash anywhere before the commit redelivers the batch rather than losing it.
This module holds the steps every such loop repeats: starting the consumer while Kafka may still
be down, fetching a batch with the offsets that commit it, waiting for the publisher's
acknowledgements (and saying so to readiness), and committing with retries. Log events are named
after the logger's service (``judge.commit_lost``, ``router.waiting``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors

from cumulus.logs import StructuredLogger
from cumulus.publisher import EventPublisher

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
    **consumer_options: Any,
) -> AIOKafkaConsumer | None:
    """A started consumer of ``topic_names`` in ``group_id``; retries while Kafka is down, None if stopped.

    Manual commits (the loop commits after the acknowledgements, never aiokafka on a timer) and
    ``earliest``: a group with no committed offset yet must not skip what was published before
    it first joined. ``consumer_options`` go to ``AIOKafkaConsumer`` as they are.
    """
    attempt = 0
    while not stopping.is_set():
        consumer = AIOKafkaConsumer(
            *topic_names,
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **consumer_options,
        )
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
