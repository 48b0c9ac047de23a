"""Gold verdicts: pairs joined with their request's feedback, in either order, across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cumulus.graders import GraderSettings, GraderSuite
from cumulus.graders.gold import Gold
from cumulus.graders.store import JudgeStore
from cumulus.kafka import codec, topics
from cumulus.v1 import common_pb2, events_pb2
from services.judge.gold_join import GoldJoin
from services.judge.handler import JudgeHandler
from tests.unit.graders.fakes import WordEmbedder
from tests.unit.judge.test_handler import FakePublisher

OK = common_pb2.STATUS_OK


def shadow(pair_id: str, live: str, candidate: str, tenant: str = "t") -> SimpleNamespace:
    event = events_pb2.ShadowPair(
        meta=codec.new_meta(tenant=tenant, workflow="route", producer="test"),
        pair_id=pair_id,
        request_id=f"r-{pair_id}",
        adapter_id="ad",
        messages=[events_pb2.ShadowPair().messages.add(role="user", content="where does this go?")],
        live=events_pb2.ShadowOutput(text=live, status=OK),
        candidate=events_pb2.ShadowOutput(text=candidate, status=OK),
    )
    return SimpleNamespace(
        topic=topics.SHADOW.name, partition=0, offset=0, key=b"", value=codec.encode_event(event)
    )


def feedback(request_id: str, tenant: str = "t", **fields: Any) -> SimpleNamespace:
    event = events_pb2.FeedbackEvent(
        meta=codec.new_meta(tenant=tenant, workflow="route", producer="test"), request_id=request_id, **fields
    )
    return SimpleNamespace(
        topic=topics.FEEDBACK.name, partition=0, offset=0, key=b"", value=codec.encode_event(event)
    )


class Judge:
    """A handler over a real SQLite store, reopened by ``restart`` as a restarted judge would."""

    def __init__(self, path: Path, window_s: float = 3600.0) -> None:
        self.path, self.window_s = path, window_s
        self.suite = GraderSuite(GraderSettings(workflow_graders={"route": "label"}), embedder=WordEmbedder())
        self.publisher = FakePublisher()
        self.restart()

    def restart(self) -> None:
        self.store = JudgeStore(self.path)
        self.join = GoldJoin(self.store, window_s=self.window_s, max_pending=100)
        self.handler = JudgeHandler(self.publisher, self.suite, self.store, self.join)  # type: ignore[arg-type]

    def batch(self, *records: SimpleNamespace) -> list[events_pb2.Verdict]:
        before = len(self.publisher.events)
        assert asyncio.run(self.handler.handle(list(records), asyncio.Event()))
        new = [event for _, event in self.publisher.events[before:]]
        return [v for v in new if isinstance(v, events_pb2.Verdict) and v.reference == "gold"]


@pytest.fixture
def judge(tmp_path: Path) -> Judge:
    return Judge(tmp_path / "judge.sqlite")


def test_feedback_after_the_pair_joins_it_even_across_a_restart(judge: Judge) -> None:
    assert judge.batch(shadow("p1", live="billing", candidate="refunds")) == []
    assert judge.join.waiting() == 1
    judge.store.close()
    judge.restart()  # the pending pair is on disk, not in memory
    (verdict,) = judge.batch(feedback("r-p1", correction="refunds"))
    assert (verdict.passed, verdict.live_passed) == (True, False)  # right where live was wrong
    assert verdict.request_id == "r-p1" and verdict.adapter_id == "ad" and verdict.meta.tenant == "t"
    assert judge.join.waiting() == 0
    assert judge.batch(feedback("r-p1", correction="billing")) == []  # counted once


def test_feedback_before_the_pair_and_the_latest_feedback_wins(judge: Judge) -> None:
    first = feedback("r-p2", correction="billing")
    latest = feedback("r-p2", correction="refunds")
    assert judge.batch(latest) == []
    assert judge.batch(first) == []  # arrives late, but was given earlier: does not replace the latest
    (verdict,) = judge.batch(shadow("p2", live="billing", candidate="refunds"))
    assert (verdict.passed, verdict.live_passed) == (True, False)


def test_a_score_or_label_judges_live_and_an_unknown_candidate_gives_no_verdict(judge: Judge) -> None:
    (confirmed,) = judge.batch(shadow("p3", "billing", "billing"), feedback("r-p3", score=0.9))
    assert (confirmed.passed, confirmed.live_passed) == (True, True)
    (both_wrong,) = judge.batch(shadow("p4", "billing", "Billing."), feedback("r-p4", label="wrong"))
    assert (both_wrong.passed, both_wrong.live_passed) == (False, False)
    assert judge.batch(shadow("p5", "billing", "refunds"), feedback("r-p5", label="bad")) == []
    assert judge.batch(shadow("p6", "billing", "refunds"), feedback("r-p6", label="urgent")) == []
    assert judge.join.waiting() == 1  # p6: a tag is no gold, the pair still waits for some


def test_another_tenants_feedback_never_joins(judge: Judge) -> None:
    judge.batch(shadow("p7", "billing", "refunds", tenant="acme"))
    assert judge.batch(feedback("r-p7", tenant="other", correction="refunds")) == []
    (verdict,) = judge.batch(feedback("r-p7", tenant="acme", correction="refunds"))
    assert verdict.meta.tenant == "acme"


def test_a_pair_stops_waiting_after_the_window(tmp_path: Path) -> None:
    judge = Judge(tmp_path / "judge.sqlite", window_s=0.05)
    judge.batch(shadow("p8", "billing", "refunds"))
    assert judge.join.waiting() == 1
    asyncio.run(asyncio.sleep(0.1))
    judge.batch()  # any later batch prunes
    assert judge.join.waiting() == 0
    assert judge.batch(feedback("r-p8", correction="refunds")) == []


def test_gold_verdict_ids_are_stable_so_a_redelivered_batch_dedupes(judge: Judge) -> None:
    pair, note = shadow("p9", "billing", "refunds"), feedback("r-p9", correction="refunds")
    (first,) = judge.batch(pair, note)
    (again,) = judge.batch(pair, note)
    assert first.verdict_id == again.verdict_id


@pytest.mark.parametrize(
    ("score", "label", "correction", "kind"),
    [
        (None, "", "refunds", "correction"),
        (0.2, "good", "refunds", "correction"),  # a correction says more than a score
        (0.7, "", "", "confirmed"),
        (0.2, "", "", "refuted"),
        (None, "Thumbs Up", "", "confirmed"),
        (None, "incorrect", "", "refuted"),
        (None, "urgent", "", None),
        (None, "", "   ", None),
    ],
)
def test_what_feedback_counts_as_gold(
    score: float | None, label: str, correction: str, kind: str | None
) -> None:
    gold = Gold.from_feedback(score, label, correction)
    assert (gold.kind if gold else None) == kind
