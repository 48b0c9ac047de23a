"""The publisher every service writes events to Kafka with: ``publish()`` never blocks, never loses one.

``publish()`` stamps ``meta.published_at``, keys the event by its workflow and queues it (synchronous,
O(1)). A task hands queued records to an aiokafka producer (acks=all, idempotence, linger); they stay in
flight until Kafka acknowledges them, and aiokafka retries them with the same producer id and sequence
numbers, so a broker that comes back dedupes the retries. When Kafka stops answering (a record in flight
unacknowledged for ``stall_timeout_s``, a send that cannot be scheduled, ``max_queued`` events waiting),
in-flight records are copied to the on-disk spool (:mod:`cumulus.kafka.spool`) but stay with aiokafka, then
the queue and every new event follow them there, in order. Once the in-flight ones are acknowledged the
spool is replayed in order; when it is empty, events take the direct path again. So a workflow's events
keep their order across outages, and memory holds at most ``max_in_flight + max_queued`` events.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import Any

from aiokafka import errors as kafka_errors
from google.protobuf.message import Message
from prometheus_client import REGISTRY, CollectorRegistry

from cumulus.errors import CumulusError, InvalidArgument
from cumulus.kafka.codec import encode_event, encode_key
from cumulus.kafka.inflight import InFlightWindow, ProducerBroken, send_record
from cumulus.kafka.producer import abort, new_producer, publisher_metrics
from cumulus.kafka.security import KafkaSecurity
from cumulus.kafka.spool import Spool, SpoolRecord
from cumulus.kafka.topics import TopicSpec
from cumulus.logs import get_logger
from cumulus.v1 import common_pb2

_TICK_S = 0.1
_REPLAY_BATCH = 1000

log = get_logger("publisher")


class EventPublisher:
    """Publishes cumulus events to Kafka; see the module docstring for the guarantees."""

    def __init__(
        self,
        bootstrap_servers: str,
        spool_dir: Path,
        *,
        producer_name: str,
        max_spool_bytes: int = 256 * 1024 * 1024,
        linger_ms: int = 5,
        max_in_flight: int = 5000,
        max_queued: int = 20000,
        stall_timeout_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        request_timeout_ms: int = 120_000,
        registry: CollectorRegistry = REGISTRY,
        login: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.producer_name = producer_name
        self._login = login
        """How its producers log in; None: the process's own (cumulus/kafka/security.py)."""
        self._linger_ms = linger_ms
        self._max_in_flight = max_in_flight
        self._max_queued = max_queued
        self._stall_timeout_s = stall_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_ms = request_timeout_ms
        self._spool = Spool(spool_dir, max_spool_bytes, limit_setting="max_spool_bytes")
        self._spooling = self._spool.depth > 0  # what a previous run left goes before anything new
        self._spool_since = time.monotonic()
        self._queue: deque[SpoolRecord] = deque()
        self._sending: SpoolRecord | None = None  # popped from the queue, inside producer.send()
        self._sending_spooled = False
        self._producer: Any = None
        self._run_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._closed = False
        metrics = publisher_metrics(registry)
        self._spooled = metrics.spooled.labels(service=producer_name)
        self._dropped = metrics.dropped.labels(service=producer_name)
        self._inflight = InFlightWindow(
            self._spool,
            self._wake,
            producer_name=producer_name,
            stall_timeout_s=stall_timeout_s,
            published=metrics.published.labels(service=producer_name),
            replayed=metrics.replayed.labels(service=producer_name),
            dropped=self._dropped,
        )
        metrics.spool_depth.labels(service=producer_name).set_function(lambda: self._spool.depth)

    @property
    def spool_depth(self) -> int:
        """Events in the on-disk spool, waiting for Kafka."""
        return self._spool.depth

    @property
    def healthy(self) -> bool:
        """Connected to Kafka, and Kafka acknowledges what it is sent."""
        return self._producer is not None and not self._closing.is_set() and not self._inflight.stalled()

    async def start(self) -> None:
        """Connect (one try); when Kafka is down, spool from now on and keep trying in the background."""
        producer = self._producer = await self._try_connect()
        if producer is None:
            self._enter_spool_mode("kafka unreachable at start")
        self._run_task = asyncio.create_task(self._run(producer), name=f"publisher-{self.producer_name}")
        self._run_task.add_done_callback(self._on_run_done)

    def publish(self, spec: TopicSpec, event: Message) -> None:
        """Queue ``event`` for ``spec``'s topic, keyed by tenant+workflow; never blocks or raises for Kafka.

        Call it from the event loop's thread. Raises only for a caller's bug: an event of another
        topic's type, or publishing after ``close()``.
        """
        meta = getattr(event, "meta", None)
        if not isinstance(event, spec.event_type) or not isinstance(meta, common_pb2.EventMeta):
            raise InvalidArgument("event", f"a {type(event).__name__} cannot go to {spec.name}")
        if self._closed:
            raise CumulusError(f"publish() to {spec.name} after close()", fix="close the publisher last")
        meta.published_at.FromNanoseconds(time.time_ns())
        record = SpoolRecord(spec.name, encode_key(meta.tenant, meta.workflow), encode_event(event))
        if self._spooling:
            self._to_spool(record)
            return
        self._queue.append(record)
        if len(self._queue) >= self._max_queued:
            self._enter_spool_mode("publish queue full")
        self._wake.set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until Kafka acknowledged everything published so far, spool included; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self._drained():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued, in flight or spooled for up to ``timeout_s``; spool what is left.

        The next publisher on the same ``spool_dir`` replays it before anything new.
        """
        if self._closed:
            return
        self._closing.set()
        self._wake.set()
        if self._run_task is not None:
            await asyncio.wait({self._run_task}, timeout=timeout_s)
        with suppress(ProducerBroken):
            self._inflight.settle()  # acknowledged records must not be spooled again
        if not self._drained():
            self._enter_spool_mode(f"kafka did not acknowledge everything within {timeout_s}s of close()")
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        if self._producer is not None:
            await abort(self._producer)
            self._producer = None
        self._inflight.drop_unspooled("publisher closed")
        self._spool.close()
        self._closed = True
        log.info("publisher.closed", producer=self.producer_name, spool_depth=self._spool.depth)

    def _on_run_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # A bug, not Kafka trouble: events still reach the spool (once the queue is full), not Kafka.
            log.error("publisher.crashed", producer=self.producer_name, error=repr(task.exception()))

    def _to_spool(self, record: SpoolRecord) -> bool:
        if self._spool.append(record):
            self._spooled.inc()
            return True
        self._dropped.inc()
        return False

    def _enter_spool_mode(self, reason: str) -> None:
        """Copy everything unacknowledged to the spool, oldest first; new events follow it there."""
        if self._spooling:
            return
        self._spooling = True
        self._spool_since = time.monotonic()
        self._spooled.inc(self._inflight.copy_to_spool())
        if self._sending is not None:
            self._sending_spooled = self._to_spool(self._sending)
        while self._queue:
            self._to_spool(self._queue.popleft())
        log.warning("kafka.spooling", producer=self.producer_name, reason=reason, depth=self._spool.depth)

    async def _run(self, producer: Any) -> None:
        while True:
            if producer is None:
                producer = await self._connect()
                if producer is None:
                    return
            self._producer = producer
            try:
                await self._pump(producer)
            except ProducerBroken as exc:
                log.error("kafka.producer_failed", producer=self.producer_name, error=repr(exc.__cause__))
                # Let the broker answer for what it was sent, so only records it refused are sent again.
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._inflight.all_answered(), self._stall_timeout_s)
                await abort(producer)
                self._producer = None
                self._inflight.fail_unanswered()
                self._enter_spool_mode("producer failed")  # until a new one is connected
                producer = None
                continue
            self._producer = None
            await producer.stop()  # nothing is pending: this only closes connections
            return

    async def _pump(self, producer: Any) -> None:
        await self._inflight.resend_failed(producer)
        while True:
            self._wake.clear()
            self._inflight.settle()
            if self._spooling and not self._spool.depth:
                self._spooling = False
                took_s = round(time.monotonic() - self._spool_since, 2)
                log.info("kafka.spool_drained", producer=self.producer_name, spooled_for_s=took_s)
            if self._inflight.stalled():
                self._enter_spool_mode(f"kafka acknowledged nothing for {self._stall_timeout_s}s")
            elif self._spooling:
                await self._replay(producer)
            else:
                await self._send_queued(producer)
            if self._closing.is_set() and self._drained():
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _TICK_S)

    async def _send_queued(self, producer: Any) -> None:
        while self._queue and len(self._inflight) < self._max_in_flight:
            record = self._sending = self._queue.popleft()
            self._sending_spooled = False
            try:
                future = await send_record(producer, record, self._stall_timeout_s)
            except (kafka_errors.KafkaError, TimeoutError) as exc:
                self._sending = None  # it goes back to the queue: spooling must not copy it twice
                if not self._spooling:
                    self._queue.appendleft(record)
                    self._enter_spool_mode(f"send failed: {exc!r}")
                return  # else: in the spool already (or counted as dropped when it was full)
            finally:
                self._sending = None
            if self._spooling:  # switched while we were in send(): aiokafka has the record too
                if self._sending_spooled:
                    self._spool.read(1)  # it is at the read position: skip it like the other in-flight
                self._inflight.track(record, future, spooled=self._sending_spooled)
                return
            self._inflight.track(record, future, spooled=False)

    async def _replay(self, producer: Any) -> None:
        records = self._spool.read(min(self._max_in_flight - len(self._inflight), _REPLAY_BATCH))
        for index, record in enumerate(records):
            try:
                future = await send_record(producer, record, self._stall_timeout_s)
            except (kafka_errors.KafkaError, TimeoutError):
                self._spool.unread_last(len(records) - index)
                return
            self._inflight.track(record, future, spooled=True)

    def _drained(self) -> bool:
        return not (self._queue or self._inflight or self._sending or self._spool.depth)

    async def _connect(self) -> Any:
        """Retry until connected (returns the producer) or closing (returns None)."""
        attempt = 0
        while not self._closing.is_set():
            attempt += 1
            with suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), min(0.25 * attempt, 2.0))
            if self._closing.is_set():
                break
            producer = await self._try_connect(quiet=attempt % 30 != 0)  # a line a minute, not per try
            if producer is not None:
                return producer
        return None

    async def _try_connect(self, *, quiet: bool = False) -> Any:
        producer = new_producer(
            self.bootstrap_servers, self.producer_name, self._linger_ms, self._request_timeout_ms, self._login
        )
        try:
            await asyncio.wait_for(producer.start(), self._connect_timeout_s)
        except (kafka_errors.KafkaError, OSError) as exc:  # OSError covers TimeoutError
            await abort(producer)
            if not quiet:
                log.warning("kafka.unreachable", producer=self.producer_name, error=repr(exc))
            return None
        except BaseException:
            await abort(producer)
            raise
        log.info("kafka.connected", producer=self.producer_name, bootstrap=self.bootstrap_servers)
        return producer
