"""The publisher's in-flight window, with hand-resolved futures and a real spool: counts, acks, resends."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import errors as kafka_errors
from prometheus_client import CollectorRegistry

from cumulus.kafka.inflight import InFlightWindow, ProducerBroken, send_record
from cumulus.kafka.producer import publisher_metrics
from cumulus.kafka.spool import Spool, SpoolRecord, encode_frame


class FakeProducer:
    """Answers send() with a future of its own (kept in ``futures``), or raises ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[bytes] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, *, key: bytes | None) -> asyncio.Future[Any]:
        if self.error is not None:
            raise self.error
        self.sent.append(value)
        self.futures.append(asyncio.get_running_loop().create_future())
        return self.futures[-1]


class Window:
    """An InFlightWindow on a spool under ``tmp_path``, with its metrics in a registry of its own."""

    def __init__(
        self, tmp_path: Path, *, max_spool_bytes: int = 1 << 20, stall_timeout_s: float = 5.0
    ) -> None:
        self.registry = CollectorRegistry()
        metrics = publisher_metrics(self.registry)
        self.spool = Spool(tmp_path / "spool", max_spool_bytes)
        self.wake = asyncio.Event()
        self.window = InFlightWindow(
            self.spool,
            self.wake,
            producer_name="test",
            stall_timeout_s=stall_timeout_s,
            published=metrics.published.labels(service="test"),
            replayed=metrics.replayed.labels(service="test"),
            dropped=metrics.dropped.labels(service="test"),
        )

    def track(self, value: bytes, *, spooled: bool = False) -> asyncio.Future[Any]:
        record = _record(value)
        if spooled:
            assert self.spool.append(record) and self.spool.read(1) == [record]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.window.track(record, future, spooled=spooled)
        return future

    def count(self, name: str) -> float | None:
        return self.registry.get_sample_value(f"cumulus_events_{name}_total", {"service": "test"})


def _record(value: bytes) -> SpoolRecord:
    return SpoolRecord("topic", b"key", value)


async def test_only_the_answered_prefix_settles_and_spooled_ones_are_acked(tmp_path: Path) -> None:
    w = Window(tmp_path)
    first, second, third = w.track(b"1", spooled=True), w.track(b"2"), w.track(b"3")
    third.set_result(None)
    await asyncio.sleep(0)
    assert w.wake.is_set()
    w.window.settle()
    assert len(w.window) == 3 and w.count("published") == 0  # the oldest is still unanswered
    first.set_result(None)
    second.set_result(None)
    w.window.settle()
    assert len(w.window) == 0 and w.spool.depth == 0
    assert (w.count("published"), w.count("replayed"), w.count("dropped")) == (3, 1, 0)


async def test_a_refused_record_is_dropped_and_a_broken_producer_stops_settling(tmp_path: Path) -> None:
    w = Window(tmp_path)
    w.track(b"1").set_exception(kafka_errors.MessageSizeTooLargeError())
    w.track(b"2").set_result(None)
    w.track(b"3").set_exception(kafka_errors.KafkaConnectionError())
    w.track(b"4").set_result(None)
    with pytest.raises(ProducerBroken):
        w.window.settle()
    assert len(w.window) == 2  # the broken one and what follows it wait for the next producer
    assert (w.count("published"), w.count("dropped")) == (1, 1)


async def test_a_stalled_window_copies_to_the_spool_and_counts_what_it_refused(tmp_path: Path) -> None:
    w = Window(tmp_path, max_spool_bytes=len(encode_frame(_record(b"1"))), stall_timeout_s=0.01)
    assert not w.window.stalled()
    w.track(b"1")
    w.track(b"2")
    await asyncio.sleep(0.02)
    assert w.window.stalled()
    assert w.window.copy_to_spool() == 1  # the spool holds one
    assert w.spool.depth == 1 and w.spool.unread == 0  # aiokafka still has it: read, not replayed
    w.window.drop_unspooled("closed")
    assert len(w.window) == 0 and w.count("dropped") == 1


async def test_what_an_aborted_producer_never_answered_is_resent_in_order(tmp_path: Path) -> None:
    w = Window(tmp_path)
    w.track(b"1").set_result(None)
    w.track(b"2").set_exception(kafka_errors.RequestTimedOutError())
    w.track(b"3")
    w.window.fail_unanswered()
    producer = FakeProducer()
    await w.window.resend_failed(producer)
    assert producer.sent == [b"2", b"3"]
    for future in producer.futures:
        future.set_result(None)
    w.window.settle()
    assert len(w.window) == 0 and w.count("published") == 3


async def test_a_record_kafka_can_never_take_comes_back_as_a_failed_future() -> None:
    refused = kafka_errors.MessageSizeTooLargeError()
    future = await send_record(FakeProducer(refused), _record(b"x"), timeout_s=1.0)
    assert future.exception() is refused
    with pytest.raises(kafka_errors.KafkaConnectionError):
        await send_record(FakeProducer(kafka_errors.KafkaConnectionError()), _record(b"x"), timeout_s=1.0)
