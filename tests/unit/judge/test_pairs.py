"""Shadow pair -> grade case -> verdict, without Kafka."""

from __future__ import annotations

import json

import pytest

from cumulus.config import JudgeConfig
from cumulus.errors import EventDecodeError
from cumulus.graders import Grade
from cumulus.kafka import codec
from cumulus.v1 import common_pb2, events_pb2
from services.judge import pairs


def _pair(**kw: object) -> events_pb2.ShadowPair:
    fields: dict[str, object] = {
        "meta": codec.new_meta(tenant="t", workflow="wf", producer="test"),
        "pair_id": "p1",
        "request_id": "r1",
        "adapter_id": "ad",
        "live": events_pb2.ShadowOutput(text="yes", status=common_pb2.STATUS_OK, latency_ms=30),
        "candidate": events_pb2.ShadowOutput(text="Yes", status=common_pb2.STATUS_OK, latency_ms=10),
        "tools": [common_pb2.Tool(name="f", parameters_json='{"properties": {"a": {"default": 1}}}')],
        "messages": [common_pb2.ChatMessage(role="user", content="ok?")],
    }
    fields.update(kw)
    return events_pb2.ShadowPair(**fields)  # type: ignore[arg-type]


def test_verdict_id_depends_on_pair_and_grader_only() -> None:
    assert pairs.verdict_id("p1", "label") == pairs.verdict_id("p1", "label")
    assert (
        len(
            {pairs.verdict_id("p1", "label"), pairs.verdict_id("p1", "json"), pairs.verdict_id("p2", "label")}
        )
        == 3
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"pair_id": ""}, "no pair_id"),
        ({"adapter_id": ""}, "no adapter_id"),
        ({"request_id": ""}, "no request_id"),
    ],
)
def test_pairs_missing_what_grading_needs_are_refused(change: dict[str, object], reason: str) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        pairs.check_pair(_pair(**change))
    pair = _pair()
    pair.ClearField("candidate")
    with pytest.raises(EventDecodeError, match="no candidate output"):
        pairs.check_pair(pair)


def test_grade_case_carries_the_chat_and_tool_schemas() -> None:
    case = pairs.grade_case(_pair())
    assert (case.live, case.candidate, case.workflow, case.pair_id) == ("yes", "Yes", "wf", "p1")
    assert case.messages == ({"role": "user", "content": "ok?"},)
    assert case.tools[0].properties == {"a": {"default": 1}}


def test_the_published_grade_becomes_the_verdict_and_every_grade_a_store_row() -> None:
    first = Grade("semantic", 0.5, False, {"cosine": 0.5})
    final = Grade("pairwise", 1.0, True, {"outcome": "candidate", "consistent": True})
    graded = pairs.Graded(_pair(), (first, final))
    verdict = graded.verdict()
    assert (verdict.grader, verdict.score, verdict.passed, verdict.pair_id, verdict.adapter_id) == (
        "pairwise",
        1.0,
        True,
        "p1",
        "ad",
    )
    assert verdict.verdict_id == verdict.meta.event_id == pairs.verdict_id("p1", "pairwise")
    assert (verdict.meta.tenant, verdict.meta.workflow, verdict.meta.producer) == ("t", "wf", "judge")
    assert (verdict.live_latency_ms, verdict.candidate_latency_ms, verdict.candidate_error) == (30, 10, False)
    assert json.loads(verdict.details_json) == {"consistent": True, "outcome": "candidate"}
    rows = graded.rows()
    assert [(r.grader, r.consistent) for r in rows] == [("semantic", None), ("pairwise", True)]


def test_a_pair_against_an_incumbent_version_says_so_in_its_verdict() -> None:
    grade = Grade("label", 1.0, True, {})
    assert pairs.Graded(_pair(), (grade,)).verdict().reference == "live"
    v1 = common_pb2.Route(target=common_pb2.RouteTarget(model="small", adapter_id="ad-v1"))
    incumbent = _pair(live=events_pb2.ShadowOutput(text="yes", route=v1, status=common_pb2.STATUS_OK))
    verdict = pairs.Graded(incumbent, (grade,)).verdict()
    assert (verdict.reference, verdict.reference_adapter_id) == ("incumbent", "ad-v1")


def test_feedback_rows_keep_a_digest_of_the_correction_only() -> None:
    event = events_pb2.FeedbackEvent(
        meta=codec.new_meta(tenant="t", workflow="wf", producer="test"), request_id="r1", correction="Billing"
    )
    row = pairs.feedback_row(event)
    assert row.score is None and row.correction_digest and "Billing" not in row.correction_digest
    with pytest.raises(EventDecodeError):
        pairs.feedback_row(events_pb2.FeedbackEvent(meta=event.meta))


def test_config_refuses_pairwise_without_the_llm_judge() -> None:
    with pytest.raises(ValueError, match=r"llm_judge\.enabled"):
        JudgeConfig(graders={"wf": "pairwise"})
    assert JudgeConfig(graders={"wf": "pairwise"}, llm_judge={"enabled": True}).graders == {"wf": "pairwise"}  # type: ignore[arg-type]
