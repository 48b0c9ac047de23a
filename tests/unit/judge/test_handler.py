"""The handler's batch handling with injected fakes: crash isolation, retries, and what gets published."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from cumulus.errors import NotReady
from cumulus.graders import GradeCase, GraderSettings, GraderSuite, Outcome
from cumulus.kafka import codec, topics
from cumulus.v1 import common_pb2, events_pb2
from services.judge.handler import JudgeHandler
from tests.unit.graders.fakes import WordEmbedder


class FakePublisher:
    spool_depth = 0

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def publish(self, spec: Any, event: Any) -> None:
        self.events.append((spec.name, event))

    async def flush(self, timeout_s: float) -> bool:
        return True


class FakeStore:
    def __init__(self) -> None:
        self.grades: list[Any] = []
        self.feedback: list[Any] = []

    def record(self, grades: Sequence[Any], feedback: Sequence[Any], also: Any = None) -> None:
        self.grades.extend(grades)
        self.feedback.extend(feedback)


class FlakySuite(GraderSuite):
    """Crashes on pair "bad"; answers NotReady ``outages`` times first (an LLM judge that is down)."""

    def __init__(self, outages: int) -> None:
        super().__init__(GraderSettings(), embedder=WordEmbedder())
        self.outages = outages

    async def grade(self, cases: Sequence[GradeCase]) -> list[Outcome]:
        if self.outages:
            self.outages -= 1
            raise NotReady("judge model down")
        if any(case.pair_id == "bad" for case in cases):
            raise RuntimeError("grader bug")
        return await super().grade(cases)


def record(event: Any, topic: str = topics.SHADOW.name, offset: int = 0) -> SimpleNamespace:
    value = event if isinstance(event, bytes) else codec.encode_event(event)
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"wf", value=value)


def pair(pair_id: str) -> events_pb2.ShadowPair:
    ok = common_pb2.STATUS_OK
    return events_pb2.ShadowPair(
        meta=codec.new_meta(tenant="t", workflow="wf", producer="test"),
        pair_id=pair_id,
        request_id=f"r-{pair_id}",
        adapter_id="ad",
        live=events_pb2.ShadowOutput(text="yes", status=ok),
        candidate=events_pb2.ShadowOutput(text="Yes.", status=ok),
    )


async def test_a_crashing_pair_is_dead_lettered_alone_after_the_judge_comes_back() -> None:
    publisher, store = FakePublisher(), FakeStore()
    worker = JudgeHandler(publisher, FlakySuite(outages=1), store)  # type: ignore[arg-type]
    feedback = events_pb2.FeedbackEvent(meta=pair("x").meta, request_id="r-ok", score=1.0)
    records = [
        record(pair("ok")),
        record(pair("bad"), offset=1),
        record(b"\x00garbage", offset=2),
        record(feedback, topic=topics.FEEDBACK.name),
    ]
    assert await worker.handle(records, asyncio.Event())
    published = [
        (topic, getattr(event, "pair_id", None) or event.reason) for topic, event in publisher.events
    ]
    assert ("cumulus.verdicts.v1", "ok") in published
    reasons = sorted(reason for topic, reason in published if topic == topics.DEADLETTER.name)
    assert len(reasons) == 2
    assert reasons[0] == "grader crashed: RuntimeError: grader bug"
    assert reasons[1].startswith("not a valid ShadowPair")
    assert [g.pair_id for g in store.grades] == ["ok"] and store.feedback[0].score == 1.0
    assert worker.progress.waiting_for is None


async def test_stopping_while_the_judge_is_down_leaves_the_batch_unacknowledged() -> None:
    publisher, store = FakePublisher(), FakeStore()
    worker = JudgeHandler(publisher, FlakySuite(outages=100), store)  # type: ignore[arg-type]
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.handle([record(pair("ok"))], stopping))
    await asyncio.sleep(0.1)
    assert worker.progress.waiting_for == "judge model down"
    stopping.set()
    assert await task is False
    assert publisher.events == [] and store.grades == []
