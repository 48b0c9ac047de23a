"""Capture: Kafka -> ClickHouse, each record inserted exactly once, offsets committed after the insert.

One aiokafka consumer (manual commits, static group membership) reads every captured topic and
buffers records per partition. A partition's batch is cut at ``batch_rows`` rows or after
``batch_max_wait_s``, then, strictly in this order:

1. **note**: commit the batch's *first* offset (the committed position does not move) with the
   metadata ``cumulus.pending-last=<last>``;
2. **insert** its rows with ``insert_deduplication_token = topic:partition:first-last``, retrying
   until ClickHouse acknowledges (a batch is never skipped); rows ClickHouse refuses for good are
   isolated by splitting the batch (services/collector/refusals.py);
3. **dead-letter** the records that could not be decoded, converted or stored, and wait until
   Kafka has them;
4. **commit** ``last + 1`` with empty metadata.

Why that is exactly once: a crash before 1 leaves nothing inserted, so any batching afterwards is
fine. A crash between 1 and 4 leaves the note; the next owner of the partition reads it on
assignment (batching.Replay) and cuts exactly ``first..last`` again, so the retried insert carries
the same token: ClickHouse drops it if the first attempt landed and stores it if not. The offset
only passes a record after its row is in ClickHouse (or its dead letter is in Kafka). So
``count()`` equals the number of distinct events even without ``FINAL``; the ReplacingMergeTree
key only has to absorb events a producer sent twice.

faust's agents are not used for this: its streams topped out at ~9-16k records/s on this machine
before any work, and its ack bookkeeping has known holes (faust-streaming #606, #527).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from google.protobuf.message import Message
from prometheus_client import Counter

from cumulus.config import CaptureConfig
from cumulus.errors import EventDecodeError, NotReady
from cumulus.kafka import deadletter, security, topics
from cumulus.kafka.publisher import EventPublisher
from cumulus.kafka.runtime import backoff_s, start_consumer, stopped_within
from cumulus.logs import get_logger
from cumulus.v1 import events_pb2
from services.collector.batching import PartitionBuffer, Replay, parse_pending_note, pending_note
from services.collector.clickhouse import dedup_token
from services.collector.refusals import insert_isolating_refusals
from services.collector.rows import CAPTURES, Capture
from services.collector.store import ClickHouseStore

CONSUMER = "collector"
ROWS = Counter("collector_rows_inserted_total", "Rows inserted into ClickHouse", ["table"])
DEAD = Counter("collector_dead_letters_total", "Records sent to the dead-letter topic", ["topic"])
RETRIES = Counter("collector_insert_retries_total", "Batch inserts retried after a failure", ["table"])
log = get_logger("collector")


class CapturePipeline:
    """Consumes the captured topics into ClickHouse (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        cfg: CaptureConfig,
        store: ClickHouseStore,
        publisher: EventPublisher,
        captures: dict[str, Capture] = CAPTURES,
        screen: Callable[[Message], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.screen = screen
        """Redacts each event before its row is made and drops erased ones (None: rows as the
        events are, in tests); services/collector/__main__.py."""
        self.store = store
        self.publisher = publisher
        self.captures = captures
        self._bootstrap = bootstrap_servers
        self._buffers: dict[TopicPartition, PartitionBuffer] = defaultdict(PartitionBuffer)
        self._stopping = asyncio.Event()
        self._deadline: float | None = None
        """Set by stop(): retries of the batch in hand give up at this monotonic time."""
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def start(self, stopping: asyncio.Event) -> bool:
        """Connect to Kafka and join the group, retrying while Kafka is down; False if ``stopping`` first.

        Partitions arrive with the first fetch (the listener reads their pending notes).
        """
        attempt = 0
        while self._admin is None and not stopping.is_set():
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap, client_id=CONSUMER, **security.client_kwargs()
            )
            try:
                await admin.start()
                self._admin = admin
            except kafka_errors.KafkaError as exc:
                await admin.close()
                log.warning("capture.kafka_unavailable", error=repr(exc), attempt=attempt + 1)
                await stopped_within(stopping, backoff_s(attempt))
                attempt += 1
        self._consumer = await start_consumer(
            *self.captures,
            bootstrap_servers=self._bootstrap,
            group_id=self.cfg.group_id,
            client_id=CONSUMER,
            stopping=stopping,
            listener=_Listener(self),
            group_instance_id=self.cfg.instance_id,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20,
        )
        return self._consumer is not None

    async def readiness(self) -> str | None:
        """Ready once the group gave this collector its partitions."""
        if self._consumer is None:
            return "consumer not started"
        return None if self._consumer.assignment() else "waiting for a partition assignment"

    async def run(self) -> None:
        """Fetch, batch and flush until ``stop()``; then flush what is buffered, within the grace."""
        consumer = self._require_consumer()
        while not self._stopping.is_set():
            fetched = await consumer.getmany(
                timeout_ms=self._fetch_timeout_ms(), max_records=self.cfg.max_batch_rows
            )
            now = time.monotonic()
            for tp, records in fetched.items():
                self._buffers[tp].add(records, now)
            await self._flush_due(time.monotonic())
        await self._drain()

    def stop(self) -> None:
        """Finish the batch in hand, flush what is buffered, commit; give up after ``stop_grace_s``."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.cfg.stop_grace_s
        self._stopping.set()

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    # -- batches -------------------------------------------------------------------------------
    def _fetch_timeout_ms(self) -> int:
        # Wake up in time for the oldest buffered batch, and at least every 250 ms to notice stop().
        wait = 0.25
        for buffer in self._buffers.values():
            if buffer.records and buffer.ready and buffer.replay is None:
                wait = min(wait, buffer.since + self.cfg.batch_max_wait_s - time.monotonic())
        return max(0, int(wait * 1000))

    async def _flush_due(self, now: float) -> None:
        for tp, buffer in list(self._buffers.items()):
            dropped = buffer.check_replay()
            if dropped:
                log.warning("capture.replay_dropped", topic=tp.topic, partition=tp.partition, why=dropped)
            while self._owned(tp, buffer) and buffer.due(now, self.cfg.batch_rows, self.cfg.batch_max_wait_s):
                await self._flush_or_block(tp, buffer)

    async def _drain(self) -> None:
        """On stop: insert and commit every buffered record whose partition is ready, within the grace."""
        for tp, buffer in list(self._buffers.items()):
            while self._owned(tp, buffer) and buffer.due(time.monotonic(), 0, 0) and not self._out_of_time(0):
                await self._flush_or_block(tp, buffer)

    def _owned(self, tp: TopicPartition, buffer: PartitionBuffer) -> bool:
        # A rebalance during a flush replaces the partition's buffer (its records are read again
        # from the last commit): the old one must not cut batches that the new one also cuts.
        return self._buffers.get(tp) is buffer

    async def _flush_or_block(self, tp: TopicPartition, buffer: PartitionBuffer) -> None:
        if not await self._flush(tp, buffer.cut(self.cfg.max_batch_rows)):
            # A later batch must never be committed past this one: this partition stays blocked
            # until it is assigned again (its position is then reset to the last commit).
            buffer.ready = False
            buffer.records.clear()

    def _out_of_time(self, pause: float) -> bool:
        return self._deadline is not None and time.monotonic() + pause > self._deadline

    async def _flush(self, tp: TopicPartition, records: list[Any]) -> bool:
        """Steps 1-4 of the module docstring for one batch of one partition; False if not committed."""
        capture = self.captures[tp.topic]
        first, last = records[0].offset, records[-1].offset
        rows, sources, dead = [], [], []
        for record in records:
            try:
                row = capture.row(record.value, self.screen)
                if row is not None:  # e.g. a shadow pair that is not an audit's: nothing to keep
                    rows.append(row)
                    sources.append(record)
            except EventDecodeError as exc:
                dead.append(self._letter(record, exc.message))
            except Exception as exc:  # any other per-record failure is that record's, not the batch's
                log.exception("capture.row_failed", topic=tp.topic, offset=record.offset)
                dead.append(self._letter(record, f"cannot be stored: {type(exc).__name__}: {exc}"))
        if rows:
            if not await self._commit(tp, first, pending_note(last)):
                return False  # the partition is no longer ours (or we are out of time): nothing inserted
            token = dedup_token(tp.topic, tp.partition, first, last)
            finished, refused = await insert_isolating_refusals(
                lambda part, part_token: self._insert(capture, part, part_token), rows, token
            )
            if not finished:
                return False  # the note stays: whoever reads this partition next re-inserts the batch
            dead.extend(self._letter(sources[index], why) for index, why in refused)
            ROWS.labels(capture.table.name).inc(len(rows) - len(refused))
        if dead:
            await self._dead_letter(tp, dead)
        return await self._commit(tp, last + 1, "")

    @staticmethod
    def _letter(record: Any, reason: str) -> events_pb2.DeadLetter:
        return deadletter.dead_letter(
            record, consumer=CONSUMER, producer=CONSUMER, reason=reason, replayable=True
        )

    async def _insert(self, capture: Capture, rows: Sequence[Any], token: str) -> bool:
        pause = 0.1
        while True:
            try:
                await self.store.insert(capture.table, rows, token)
                return True
            except NotReady as exc:
                RETRIES.labels(capture.table.name).inc()
                log.error("capture.insert_failed", table=capture.table.name, token=token, error=exc.message)
            if self._out_of_time(pause):
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.cfg.insert_retry_max_s)

    async def _commit(self, tp: TopicPartition, offset: int, metadata: str) -> bool:
        consumer = self._require_consumer()
        pause = 0.1
        while True:
            try:
                await consumer.commit({tp: OffsetAndMetadata(offset, metadata)})
                return True
            except (kafka_errors.CommitFailedError, kafka_errors.IllegalStateError) as exc:
                # Rebalanced away: the new owner starts from the last commit and honours its note.
                log.warning("capture.partition_lost", topic=tp.topic, partition=tp.partition, error=repr(exc))
                return False
            except kafka_errors.KafkaError as exc:
                log.error("capture.commit_failed", topic=tp.topic, partition=tp.partition, error=repr(exc))
            if self._out_of_time(pause):
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def _dead_letter(self, tp: TopicPartition, letters: list[events_pb2.DeadLetter]) -> None:
        for letter in letters:
            self.publisher.publish(topics.DEADLETTER, letter)
            log.warning(
                "capture.dead_letter",
                workflow=letter.meta.workflow,
                topic=tp.topic,
                partition=tp.partition,
                offset=letter.source_offset,
                reason=letter.reason,
            )
        DEAD.labels(tp.topic).inc(len(letters))
        # The offset must not pass a poison record before its dead letter is safe in Kafka.
        if not await self.publisher.flush(timeout_s=10.0):
            log.error("capture.dead_letter_unconfirmed", topic=tp.topic, partition=tp.partition)

    # -- assignment ----------------------------------------------------------------------------
    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        notes = await self._read_notes(assigned)
        for tp in assigned:
            buffer = self._buffers[tp]
            last = parse_pending_note(notes[tp].metadata) if tp in notes else None
            if last is not None and notes[tp].offset >= 0:
                buffer.replay = Replay(notes[tp].offset, last)
                log.info(
                    "capture.replay",
                    topic=tp.topic,
                    partition=tp.partition,
                    first=notes[tp].offset,
                    last=last,
                )
            buffer.ready = True

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Uncommitted records of a partition we lose are the next owner's: it reads them again.
        for tp in revoked:
            self._buffers.pop(tp, None)

    async def _read_notes(self, tps: set[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        admin = self._admin
        assert admin is not None
        for attempt in range(30):
            try:
                notes: dict[TopicPartition, OffsetAndMetadata] = await admin.list_consumer_group_offsets(
                    self.cfg.group_id, partitions=list(tps)
                )
                return notes
            except kafka_errors.KafkaError as exc:
                log.warning("capture.notes_unreadable", attempt=attempt + 1, error=repr(exc))
                await asyncio.sleep(1.0)
        # Without the notes a pending batch may be cut differently: its rows could be stored twice
        # (collapsed by FINAL), never lost. Better than not capturing at all.
        log.error("capture.notes_skipped", partitions=len(tps))
        return {}

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise NotReady("the capture consumer is not started")
        return self._consumer


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: CapturePipeline) -> None:
        self.pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.pipeline._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.pipeline._on_assigned(assigned)
