"""EventPublisher against a real broker: delivery, order, and no loss or duplicate across outages."""

import asyncio
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from cumulus.kafka import codec, topics
from cumulus.kafka.publisher import EventPublisher
from cumulus.v1 import events_pb2
from tests.integration import kafka_fixtures
from tests.integration.kafka_fixtures import RestartableKafka
from tests.integration.records import decode_as_or_none

pytestmark = pytest.mark.integration

WORKFLOWS = [f"wf-{i}" for i in range(12)]


class Traffic:
    """Events of one test: a tenant of its own, and the order they were published in per workflow."""

    def __init__(self) -> None:
        self.tenant = f"t-{uuid.uuid4().hex[:8]}"
        self.sent: dict[str, list[str]] = defaultdict(list)
        self.publish_s: list[float] = []
        self.total = 0

    def publish(self, publisher: EventPublisher, count: int) -> None:
        for _ in range(count):
            workflow = WORKFLOWS[self.total % len(WORKFLOWS)]
            self.total += 1
            meta = codec.new_meta(tenant=self.tenant, workflow=workflow, producer="test")
            event = events_pb2.InferenceEvent(meta=meta, prompt_text="p" * 300, response_text="r" * 200)
            started = time.perf_counter()
            publisher.publish(topics.INFERENCE, event)
            self.publish_s.append(time.perf_counter() - started)
            self.sent[workflow].append(meta.event_id)

    async def assert_delivered_once_in_order(self, bootstrap: str) -> None:
        received = await _consume_all(bootstrap, self.tenant)
        ids = [event_id for per_workflow in received.values() for event_id in per_workflow]
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates"
        assert len(ids) == self.total, f"{self.total - len(ids)} events missing"
        assert received == self.sent  # same events, same order within each workflow

    async def assert_delivered_in_order(self, bootstrap: str, max_duplicates: int) -> int:
        """Nothing lost, first deliveries in order; returns how many records arrived twice.

        A replaced producer has a new producer id, so the broker cannot recognise a record whose
        write it finished but whose answer the old producer never got: that one arrives twice,
        under its one event id (every consumer dedupes on it).
        """
        received = await _consume_all(bootstrap, self.tenant)
        first = {workflow: list(dict.fromkeys(ids)) for workflow, ids in received.items()}
        assert first == self.sent  # every event, in order within each workflow
        duplicates = sum(len(ids) for ids in received.values()) - self.total
        assert duplicates <= max_duplicates, f"{duplicates} duplicates, more than {max_duplicates} spooled"
        return duplicates


async def _consume_all(bootstrap: str, tenant: str) -> dict[str, list[str]]:
    """Every event of ``tenant`` on the inference topic, per workflow in offset order, up to the end."""
    consumer = AIOKafkaConsumer(
        topics.INFERENCE.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()  # no group: every partition is assigned, read from the beginning
    received: dict[str, list[str]] = defaultdict(list)
    try:
        partitions = list(consumer.assignment())
        end = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + 30
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            assert time.monotonic() < deadline, "consuming back timed out"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = decode_as_or_none(events_pb2.InferenceEvent, record.value)
                    if event is not None and event.meta.tenant == tenant:
                        assert record.key == codec.encode_key(tenant, event.meta.workflow)
                        received[event.meta.workflow].append(event.meta.event_id)
    finally:
        await consumer.stop()
    return dict(received)


def _publisher(
    bootstrap: str, spool_dir: Path, registry: CollectorRegistry | None = None, **kwargs: int
) -> EventPublisher:
    registry = registry or CollectorRegistry()  # one per publisher: no duplicate registration
    return EventPublisher(
        bootstrap, spool_dir, producer_name="test", registry=registry, stall_timeout_s=1.0, **kwargs
    )


def _counter(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(f"cumulus_events_{name}_total", {"service": "test"}) or 0.0


async def test_events_arrive_once_in_order_and_publish_is_cheap(kafka_bootstrap: str, tmp_path: Path) -> None:
    publisher = _publisher(kafka_bootstrap, tmp_path / "spool")
    await publisher.start()
    assert publisher.healthy
    traffic = Traffic()
    started = time.perf_counter()
    for _ in range(20):  # bursts with a yield in between, like a busy gateway
        traffic.publish(publisher, 1000)
        await asyncio.sleep(0)
    assert await publisher.flush(timeout_s=30)
    seconds = time.perf_counter() - started
    await publisher.close()

    p50, p99 = (q * 1e6 for q in statistics.quantiles(traffic.publish_s, n=100)[49::49])
    rate = traffic.total / seconds
    print(f"publish() p50={p50:.1f}us p99={p99:.1f}us; {rate:.0f} events/s acknowledged (acks=all)")
    assert p99 < 1000
    assert publisher.spool_depth == 0
    await traffic.assert_delivered_once_in_order(kafka_bootstrap)


@pytest.mark.parametrize("request_timeout_ms", [120_000, 2_000], ids=["retried", "producer-replaced"])
async def test_broker_outage_loses_nothing_and_keeps_order(
    restartable_kafka: RestartableKafka, tmp_path: Path, request_timeout_ms: int
) -> None:
    registry = CollectorRegistry()
    publisher = _publisher(
        restartable_kafka.bootstrap, tmp_path / "spool", registry, request_timeout_ms=request_timeout_ms
    )
    await publisher.start()
    traffic = Traffic()
    max_depth = 0

    async def publish_for(seconds: float) -> None:
        nonlocal max_depth
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            traffic.publish(publisher, 5)
            max_depth = max(max_depth, publisher.spool_depth)
            await asyncio.sleep(0.002)

    await publish_for(1.0)
    stopping = asyncio.create_task(asyncio.to_thread(restartable_kafka.stop))
    await publish_for(1.0)
    await stopping
    await publish_for(3.0)  # longer than stall_timeout_s: the publisher must have switched to the spool
    assert not publisher.healthy and max_depth > 0
    starting = asyncio.create_task(asyncio.to_thread(restartable_kafka.start))
    while not starting.done():
        await publish_for(0.1)
    await starting
    restarted = time.monotonic()
    await publish_for(1.0)
    while publisher.spool_depth:
        await asyncio.sleep(0.01)
        assert time.monotonic() - restarted < 30, "spool not drained"
    drained_s = time.monotonic() - restarted
    assert await publisher.flush(timeout_s=30)
    await publisher.close()

    slow = sum(seconds > 0.005 for seconds in traffic.publish_s)
    worst_ms = max(traffic.publish_s) * 1e3
    print(f"{traffic.total} events, max spool depth {max_depth}, drained {drained_s:.2f}s after the restart")
    print(f"publish() max {worst_ms:.2f}ms, {slow} calls over 5ms")
    # Blocking on Kafka would take a second or more. On a loaded 2-core runner the scheduler can
    # still preempt a call for a few ms (measured: <0.3ms of CPU in those), hence the allowance.
    assert slow <= traffic.total / 1000 and worst_ms < 50
    assert _counter(registry, "published") == traffic.total and _counter(registry, "dropped") == 0
    assert _counter(registry, "spooled") == _counter(registry, "replayed") > 0
    if request_timeout_ms > 2 * 1000:  # one producer throughout: its retries are idempotent
        await traffic.assert_delivered_once_in_order(restartable_kafka.bootstrap)
    else:  # a duplicate can only be a record that went through the spool (in flight at the outage)
        spooled = int(_counter(registry, "spooled"))
        twice = await traffic.assert_delivered_in_order(restartable_kafka.bootstrap, spooled)
        print(f"{twice} records delivered twice after the producer was replaced")


async def test_publisher_starts_while_kafka_is_down(
    restartable_kafka: RestartableKafka, tmp_path: Path
) -> None:
    await asyncio.to_thread(restartable_kafka.stop)
    publisher = _publisher(restartable_kafka.bootstrap, tmp_path / "spool")
    started = time.monotonic()
    await publisher.start()
    assert time.monotonic() - started < 5 and not publisher.healthy
    traffic = Traffic()
    traffic.publish(publisher, 500)
    assert publisher.spool_depth == 500  # straight to disk: nothing waits in memory for a dead broker

    await asyncio.to_thread(restartable_kafka.start)
    assert await publisher.flush(timeout_s=30)
    assert publisher.healthy
    await publisher.close()
    await traffic.assert_delivered_once_in_order(restartable_kafka.bootstrap)


async def test_close_while_kafka_is_down_spools_and_next_start_replays(
    restartable_kafka: RestartableKafka, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    publisher = _publisher(restartable_kafka.bootstrap, spool_dir)
    await publisher.start()
    traffic = Traffic()
    traffic.publish(publisher, 200)
    assert await publisher.flush(timeout_s=30)
    await asyncio.to_thread(restartable_kafka.stop)
    traffic.publish(publisher, 300)  # in the queue and with aiokafka when close() gives up
    await asyncio.sleep(0.2)
    await publisher.close(timeout_s=1.0)
    assert publisher.spool_depth == 300

    await asyncio.to_thread(restartable_kafka.start)
    successor = _publisher(restartable_kafka.bootstrap, spool_dir)
    await successor.start()
    traffic.publish(successor, 100)  # new events queue behind the replay
    assert await successor.flush(timeout_s=30)
    await successor.close()
    await traffic.assert_delivered_once_in_order(restartable_kafka.bootstrap)


async def test_a_full_spool_drops_and_counts_but_never_raises(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    (port,) = kafka_fixtures._free_ports(1)  # nothing listens there
    publisher = _publisher(f"127.0.0.1:{port}", tmp_path / "spool", registry, max_spool_bytes=100_000)
    await publisher.start()
    Traffic().publish(publisher, 500)  # ~630 bytes each: about 150 fit
    assert 100 < publisher.spool_depth < 200
    assert _counter(registry, "dropped") == 500 - publisher.spool_depth
    assert registry.get_sample_value("cumulus_spool_depth", {"service": "test"}) == publisher.spool_depth
    await publisher.close(timeout_s=0.5)


async def test_a_record_kafka_refuses_is_dropped_without_stopping_the_rest(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    publisher = _publisher(kafka_bootstrap, tmp_path / "spool", registry)
    await publisher.start()
    traffic = Traffic()
    traffic.publish(publisher, 10)
    meta = codec.new_meta(tenant=traffic.tenant, workflow=WORKFLOWS[0], producer="test")
    publisher.publish(topics.INFERENCE, events_pb2.InferenceEvent(meta=meta, prompt_text="x" * 2_000_000))
    traffic.publish(publisher, 10)
    assert await publisher.flush(timeout_s=30)
    await publisher.close()
    assert _counter(registry, "dropped") == 1 and _counter(registry, "published") == 20
    await traffic.assert_delivered_once_in_order(kafka_bootstrap)
