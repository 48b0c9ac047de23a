"""The shared consume-loop plumbing with fake consumers and publishers: what is committed, when it stops."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors

from cumulus.kafka import runtime
from cumulus.kafka.runtime import (
    Progress,
    backoff_s,
    commit_offsets,
    fetch_batch,
    start_consumer,
    wait_acknowledged,
)
from cumulus.logs import get_logger

log = get_logger("test")
OFFSETS = {TopicPartition("t", 0): 8}


class FakeConsumer:
    """Answers each ``commit`` with the next of ``outcomes`` (an exception to raise, or None)."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


class FakePublisher:
    spool_depth = 3

    def __init__(self, unanswered: int, progress: Progress | None = None) -> None:
        self.unanswered = unanswered
        self.progress = progress
        self.seen: list[str | None] = []
        """What ``progress`` said (readiness would have said) at each flush."""

    async def flush(self, timeout_s: float) -> bool:
        if self.progress is not None:
            self.seen.append(self.progress.waiting_for)
        if self.unanswered:
            self.unanswered -= 1
            return False
        return True


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "RETRY_S", (0.01, 0.02))


def test_backoff_grows_then_stays_at_the_last_wait() -> None:
    assert [backoff_s(n) for n in range(4)] == [0.01, 0.02, 0.02, 0.02]


async def test_commit_retries_what_kafka_may_get_over() -> None:
    consumer = FakeConsumer(kafka_errors.KafkaConnectionError(), kafka_errors.RequestTimedOutError())
    assert await commit_offsets(consumer, OFFSETS, asyncio.Event(), log=log)  # type: ignore[arg-type]
    assert consumer.commits == [OFFSETS] * 3


async def test_a_commit_lost_to_a_rebalance_is_not_retried() -> None:
    consumer = FakeConsumer(kafka_errors.CommitFailedError("rebalanced"))
    assert not await commit_offsets(consumer, OFFSETS, asyncio.Event(), log=log)  # type: ignore[arg-type]
    assert consumer.commits == [OFFSETS]


async def test_stopping_commits_the_finished_batch_once_and_does_not_retry() -> None:
    stopping = asyncio.Event()
    stopping.set()
    done = FakeConsumer()
    assert await commit_offsets(done, OFFSETS, stopping, log=log)  # type: ignore[arg-type]
    failing = FakeConsumer(*[kafka_errors.KafkaConnectionError()] * 5)
    assert not await commit_offsets(failing, OFFSETS, stopping, log=log)  # type: ignore[arg-type]
    assert done.commits == failing.commits == [OFFSETS]


async def test_unacknowledged_output_shows_in_progress_until_kafka_answers() -> None:
    progress = Progress()
    publisher = FakePublisher(unanswered=2, progress=progress)
    assert await wait_acknowledged(publisher, asyncio.Event(), progress, what="the verdicts", log=log)  # type: ignore[arg-type]
    waiting = "Kafka has not acknowledged the verdicts yet"
    assert publisher.seen == [None, waiting, waiting]
    assert progress.waiting_for is None


async def test_stopping_while_unacknowledged_leaves_the_batch_uncommitted() -> None:
    progress = Progress()
    stopping = asyncio.Event()
    stopping.set()
    publisher = FakePublisher(unanswered=100)
    assert not await wait_acknowledged(publisher, stopping, progress, what="x", log=log)  # type: ignore[arg-type]
    assert progress.waiting_for == "Kafka has not acknowledged x yet"
    assert publisher.unanswered == 99


async def test_start_consumer_retries_while_kafka_is_down_and_gives_up_on_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[dict[str, Any]] = []

    class DownConsumer:
        def __init__(self, *topics: str, **options: Any) -> None:
            made.append({"topics": topics, **options})

        async def start(self) -> None:
            raise kafka_errors.KafkaConnectionError()

        async def stop(self) -> None:
            pass

    monkeypatch.setattr(runtime, "AIOKafkaConsumer", DownConsumer)
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stopping.set)
    consumer = await start_consumer(
        "a",
        "b",
        bootstrap_servers="k:9092",
        group_id="g",
        client_id="c",
        stopping=stopping,
        max_poll_records=5,
    )
    assert consumer is None
    assert len(made) >= 3
    assert made[0] == {
        "topics": ("a", "b"),
        "bootstrap_servers": "k:9092",
        "group_id": "g",
        "client_id": "c",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 5,
    }


async def test_a_batch_comes_with_the_offsets_that_commit_all_of_it_and_no_more() -> None:
    tp0, tp1, empty = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)

    def rec(tp: TopicPartition, offset: int) -> SimpleNamespace:
        return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset)

    class Batches:
        async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
            assert (timeout_ms, max_records) == (200, 1000)
            return {tp0: [rec(tp0, 4), rec(tp0, 5)], tp1: [rec(tp1, 9)], empty: []}

    records, offsets = await fetch_batch(Batches(), timeout_ms=200, max_records=1000)  # type: ignore[arg-type]
    assert [(r.partition, r.offset) for r in records] == [(0, 4), (0, 5), (1, 9)]
    assert offsets == {tp0: 6, tp1: 10}
