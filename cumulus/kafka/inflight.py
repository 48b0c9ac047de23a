"""The records an :class:`~cumulus.kafka.publisher.EventPublisher` handed to aiokafka, until Kafka answers.

Kept apart from :mod:`cumulus.kafka.publisher` so the publisher reads as its switching between the direct
path and the spool, and this module as the accounting of what Kafka acknowledged, refused or never
answered: in order, oldest first, so the spool is acknowledged exactly up to what Kafka has.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiokafka import errors as kafka_errors
from prometheus_client import Counter

from cumulus.kafka.producer import RECORD_ERRORS, delivery_failure
from cumulus.kafka.spool import Spool, SpoolRecord
from cumulus.logs import get_logger

log = get_logger("publisher")


@dataclass(eq=False)
class _InFlight:
    """One record aiokafka has, and the future it resolves once Kafka answers for it."""

    record: SpoolRecord
    future: asyncio.Future[Any]
    sent_at: float
    spooled: bool
    """Also in the spool, read but unacknowledged: acked there when Kafka acknowledges it."""


class ProducerBroken(Exception):
    """aiokafka failed a record for a reason that is not the record's: the producer must be replaced."""


async def send_record(producer: Any, record: SpoolRecord, timeout_s: float) -> asyncio.Future[Any]:
    """Hand one record to aiokafka; one Kafka can never take comes back as a failed future.

    Raises KafkaError or TimeoutError when the send itself cannot be scheduled.
    """
    try:
        send = producer.send(record.topic, record.value, key=record.key)
        future: asyncio.Future[Any] = await asyncio.wait_for(send, timeout_s)
    except RECORD_ERRORS as exc:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
    return future


class InFlightWindow:
    """The in-flight records of one publisher, oldest first; settled in order as Kafka answers.

    ``wake`` is set whenever one of them is answered; acknowledged records that came from the spool
    are acked there, and the counters count what was published, replayed and dropped.
    """

    def __init__(
        self,
        spool: Spool,
        wake: asyncio.Event,
        *,
        producer_name: str,
        stall_timeout_s: float,
        published: Counter,
        replayed: Counter,
        dropped: Counter,
    ) -> None:
        self._records: deque[_InFlight] = deque()
        self._spool = spool
        self._wake = wake
        self._producer_name = producer_name
        self._stall_timeout_s = stall_timeout_s
        self._published = published
        self._replayed = replayed
        self._dropped = dropped

    def __len__(self) -> int:
        return len(self._records)

    def track(self, record: SpoolRecord, future: asyncio.Future[Any], *, spooled: bool) -> None:
        """Add a record just handed to aiokafka."""
        self._records.append(_InFlight(record, future, time.monotonic(), spooled))
        future.add_done_callback(self._on_done)

    def copy_to_spool(self) -> int:
        """Copy every record to the spool, oldest first; returns how many the spool took.

        The copies are marked read there: aiokafka still has the records, and they are acked in the
        spool when it delivers them. One the spool refuses is not dropped: aiokafka may still deliver it.
        """
        for sent in self._records:
            sent.spooled = self._spool.append(sent.record)
        copied = sum(sent.spooled for sent in self._records)
        self._spool.read(copied)
        return copied

    async def resend_failed(self, producer: Any) -> None:
        """Send what a failed producer's broker refused again, in order, before anything else.

        aiokafka cannot recover from a failed batch: its sequence number is used up, so the broker
        refuses every later batch of that partition (OutOfOrderSequenceNumber). Per partition the
        failures are therefore a suffix of what was in flight, and resending them in order keeps order.
        """
        for sent in self._records:
            failure = delivery_failure(sent.future) if sent.future.done() else None
            if failure is not None and not isinstance(failure, RECORD_ERRORS):
                try:
                    sent.future = await send_record(producer, sent.record, self._stall_timeout_s)
                except (kafka_errors.KafkaError, TimeoutError):
                    return  # settle() finds the failure again and the producer is replaced again
                sent.sent_at = time.monotonic()
                sent.future.add_done_callback(self._on_done)

    async def all_answered(self) -> None:
        """Wait until Kafka answered for every record (or their producer was aborted)."""
        while not all(sent.future.done() for sent in self._records):
            await asyncio.sleep(0.01)

    def fail_unanswered(self) -> None:
        """Fail what an aborted producer never resolves, so those records are sent again."""
        for sent in self._records:
            if not sent.future.done():
                sent.future.set_exception(kafka_errors.KafkaError("producer aborted"))

    def settle(self) -> None:
        """Account for the finished prefix of the in-flight records, in order.

        Raises ProducerBroken at the first record failed for a reason that is not the record's.
        """
        published = from_spool = replayed = 0
        try:
            while self._records and self._records[0].future.done():
                sent = self._records[0]
                exc = delivery_failure(sent.future)
                if exc is not None and not isinstance(exc, RECORD_ERRORS):
                    raise ProducerBroken() from exc
                self._records.popleft()
                from_spool += sent.spooled
                if exc is None:
                    published += 1
                    replayed += sent.spooled
                else:
                    self._dropped.inc()
                    log.error("kafka.record_rejected", topic=sent.record.topic, error=repr(exc))
        finally:
            self._spool.ack(from_spool)
            self._published.inc(published)
            self._replayed.inc(replayed)

    def drop_unspooled(self, why: str) -> None:
        """Forget the in-flight records of a dead producer, counting those the spool could not keep."""
        lost = sum(not sent.spooled for sent in self._records if not sent.future.done())
        if lost:
            self._dropped.inc(lost)
            log.error("kafka.records_lost", producer=self._producer_name, count=lost, why=why)
        self._records.clear()

    def stalled(self) -> bool:
        """The oldest record has waited longer than ``stall_timeout_s`` for Kafka's answer."""
        return bool(self._records) and time.monotonic() - self._records[0].sent_at > self._stall_timeout_s

    def _on_done(self, future: asyncio.Future[Any]) -> None:
        # Retrieved here, or asyncio logs "exception was never retrieved" for aborted ones.
        delivery_failure(future)
        self._wake.set()
