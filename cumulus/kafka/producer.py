"""The aiokafka producer the publisher uses, its metrics, and the workarounds aiokafka 0.14 needs.

Kept apart from :mod:`cumulus.kafka.publisher` so the publisher reads as its ordering/spooling logic
and every reach into aiokafka's private parts is in one place, each with the reason.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from cumulus.kafka import security

_METADATA_RETRY_S = 0.25
# About one record, not the connection: sending it again can never succeed, so it is dropped.
RECORD_ERRORS = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
)


@dataclass(frozen=True)
class PublisherMetrics:
    """Per ``service``: published = acknowledged by Kafka (directly or replayed from the spool);
    spool depth = spooled - replayed - dropped from the spool."""

    published: Counter
    spooled: Counter
    replayed: Counter
    dropped: Counter
    spool_depth: Gauge


_METRICS: dict[int, tuple[CollectorRegistry, PublisherMetrics]] = {}


def publisher_metrics(registry: CollectorRegistry = REGISTRY) -> PublisherMetrics:
    """The publisher metrics in ``registry``, registered once and shared by every publisher using it."""
    if id(registry) not in _METRICS:  # the registry is kept in the value, so its id is never reused
        about = {"published": "acknowledged by Kafka", "spooled": "written to the spool"}
        about |= {"replayed": "acknowledged from the spool", "dropped": "lost (spool full or rejected)"}
        counters = {
            n: Counter(f"cumulus_events_{n}", f"Events {d}.", ["service"], registry=registry)
            for n, d in about.items()
        }
        gauge = Gauge("cumulus_spool_depth", "Events in the spool.", ["service"], registry=registry)
        _METRICS[id(registry)] = (registry, PublisherMetrics(**counters, spool_depth=gauge))
    return _METRICS[id(registry)][1]


def new_producer(
    bootstrap_servers: str,
    client_id: str,
    linger_ms: int,
    request_timeout_ms: int,
    login: security.KafkaSecurity | None = None,
) -> Any:
    """An idempotent acks=all producer (not started) that backs off after failed metadata updates.

    It logs in as ``login``, by default as this process does (cumulus/kafka/security.py)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        **(login.client_kwargs() if login else security.client_kwargs()),
        enable_idempotence=True,
        linger_ms=linger_ms,
        # Long, because aiokafka fails (and then cannot recover from) a batch whose partition has
        # no leader once it is this old, which happens right after a broker restart. Detecting an
        # unreachable broker is the publisher's stall timeout's job, not this one's.
        request_timeout_ms=request_timeout_ms,
    )
    _back_off_failed_metadata_updates(producer)
    return producer


def delivery_failure(future: asyncio.Future[Any]) -> BaseException | None:
    """The exception a finished delivery future failed with, None when it succeeded."""
    return kafka_errors.KafkaError("cancelled") if future.cancelled() else future.exception()


def _back_off_failed_metadata_updates(producer: Any) -> None:
    """Make ``producer`` wait a little after a failed metadata update before it tries again.

    aiokafka (0.14) retries a failed metadata update at once, and its sender asks for one whenever a
    partition it holds records for has no leader, as after a broker went down: a busy loop that burns
    a core and logs thousands of connection errors a second for as long as the outage lasts.
    """
    client = producer.client
    update = client._metadata_update

    async def update_or_back_off(*args: Any) -> Any:
        updated = await update(*args)
        if not updated:
            await asyncio.sleep(_METADATA_RETRY_S)
        return updated

    client._metadata_update = update_or_back_off


async def abort(producer: Any) -> None:
    """Close ``producer`` without flushing: what it still holds is in the spool already.

    aiokafka has no close-without-flush (Java's ``close(Duration.ZERO)``), and ``stop()`` waits for
    acknowledgements an unreachable broker never sends, so this reaches into its private parts.
    """
    producer._closed = True  # what stop() sets; keeps __del__ from warning about an unclosed producer
    with suppress(TimeoutError):
        await asyncio.wait_for(producer._sender.close(), 2.0)
    await producer.client.close()
