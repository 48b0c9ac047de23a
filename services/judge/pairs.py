"""Shadow pairs in, verdicts out: checking a pair, turning it into a GradeCase, and a Grade into a Verdict.

A verdict's id is a UUIDv5 of ``pair_id/grader``, and it is also the verdict event's
``meta.event_id``: a redelivered pair is graded by the same grader (the choice depends on the
pair and the config only), so it yields the same id and consumers dedupe it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cumulus.errors import EventDecodeError
from cumulus.graders import Grade, GradeCase, ToolSchema
from cumulus.graders.calibration import text_digest
from cumulus.graders.gold import Gold, GoldCase, GoldGrade
from cumulus.graders.store import FeedbackRow, GradeRow
from cumulus.kafka import codec
from cumulus.v1 import common_pb2, events_pb2

PRODUCER = "judge"
_VERDICT_NAMESPACE = uuid.UUID("6f1c3c2e-8a4b-4f59-9a52-3d1f0e7b9c11")


def verdict_id(pair_id: str, grader: str) -> str:
    """The same for the same pair and grader, whoever computes it and however often."""
    return uuid.uuid5(_VERDICT_NAMESPACE, f"{pair_id}/{grader}").hex


def check_pair(pair: events_pb2.ShadowPair) -> None:
    """Raise EventDecodeError (-> dead letter) when the pair lacks what grading needs."""
    for field in ("pair_id", "request_id", "adapter_id"):
        if not getattr(pair, field):
            raise EventDecodeError(f"ShadowPair has no {field}")
    for side in ("live", "candidate"):
        if not pair.HasField(side):
            raise EventDecodeError(f"ShadowPair {pair.pair_id} has no {side} output")


def live_failed(pair: events_pb2.ShadowPair) -> bool:
    """Live errored: there is no reference to grade against (skipped, not dead-lettered)."""
    return pair.live.status == common_pb2.STATUS_ERROR


def candidate_failed(pair: events_pb2.ShadowPair) -> bool:
    return pair.candidate.status == common_pb2.STATUS_ERROR


def grade_case(pair: events_pb2.ShadowPair) -> GradeCase:
    return GradeCase(
        live=pair.live.text,
        candidate=pair.candidate.text,
        workflow=pair.meta.workflow,
        messages=tuple({"role": m.role, "content": m.content} for m in pair.messages),
        tools=tuple(ToolSchema.from_json(t.name, t.parameters_json) for t in pair.tools),
        pair_id=pair.pair_id,
    )


def gold_case(pair: events_pb2.ShadowPair, gold: Gold) -> GoldCase:
    return GoldCase(
        gold=gold,
        live=pair.live.text,
        candidate="" if candidate_failed(pair) else pair.candidate.text,
        workflow=pair.meta.workflow,
        tools=tuple(ToolSchema.from_json(t.name, t.parameters_json) for t in pair.tools),
    )


def gold_verdict(pair: events_pb2.ShadowPair, grade: GoldGrade) -> events_pb2.Verdict:
    """The candidate and live, each against the request's feedback: one paired observation."""
    name = f"gold/{grade.candidate.grader}"
    vid = verdict_id(pair.pair_id, name)
    meta = codec.new_meta(
        tenant=pair.meta.tenant, workflow=pair.meta.workflow, producer=PRODUCER, event_id=vid
    )
    return events_pb2.Verdict(
        meta=meta,
        verdict_id=vid,
        pair_id=pair.pair_id,
        adapter_id=pair.adapter_id,
        grader=grade.candidate.grader,
        score=min(1.0, max(0.0, grade.candidate.score)),
        passed=grade.candidate.passed,
        details_json=grade.candidate.details_json(),
        live_latency_ms=pair.live.latency_ms,
        candidate_latency_ms=pair.candidate.latency_ms,
        candidate_error=candidate_failed(pair),
        reference="gold",
        live_score=min(1.0, max(0.0, grade.live.score)),
        live_passed=grade.live.passed,
        request_id=pair.request_id,
        reference_adapter_id=pair.live.route.target.adapter_id,
    )


def candidate_error_grade(grader: str, pair: events_pb2.ShadowPair) -> Grade:
    """A candidate that failed (error, timeout) loses to live, whatever the grader."""
    reason = pair.candidate.error_message[:300] or "candidate failed"
    return Grade(grader, 0.0, False, {"candidate_error": reason})


@dataclass(frozen=True)
class Graded:
    """One pair and every grade it got; the last one is published."""

    pair: events_pb2.ShadowPair
    grades: tuple[Grade, ...]

    @property
    def final(self) -> Grade:
        return self.grades[-1]

    def verdict(self) -> events_pb2.Verdict:
        grade, pair = self.final, self.pair
        vid = verdict_id(pair.pair_id, grade.grader)
        meta = codec.new_meta(
            tenant=pair.meta.tenant, workflow=pair.meta.workflow, producer=PRODUCER, event_id=vid
        )
        return events_pb2.Verdict(
            meta=meta,
            verdict_id=vid,
            pair_id=pair.pair_id,
            adapter_id=pair.adapter_id,
            grader=grade.grader,
            score=min(1.0, max(0.0, grade.score)),
            passed=grade.passed,
            details_json=grade.details_json(),
            live_latency_ms=pair.live.latency_ms,
            candidate_latency_ms=pair.candidate.latency_ms,
            candidate_error=candidate_failed(pair),
            reference="incumbent" if pair.live.route.target.adapter_id else "live",
            request_id=pair.request_id,
            reference_adapter_id=pair.live.route.target.adapter_id,
        )

    def rows(self) -> list[GradeRow]:
        """Every grade for the calibration store (the escalated deterministic one included)."""
        pair = self.pair
        digest = text_digest(pair.candidate.text)
        return [
            GradeRow(
                verdict_id=verdict_id(pair.pair_id, g.grader),
                pair_id=pair.pair_id,
                request_id=pair.request_id,
                workflow=pair.meta.workflow,
                adapter_id=pair.adapter_id,
                grader=g.grader,
                score=g.score,
                passed=g.passed,
                consistent=g.details.get("consistent") if g.grader == "pairwise" else None,
                candidate_digest=digest,
            )
            for g in self.grades
        ]


def feedback_row(event: events_pb2.FeedbackEvent) -> FeedbackRow:
    if not event.request_id:
        raise EventDecodeError("FeedbackEvent has no request_id")
    return FeedbackRow(
        event_id=event.meta.event_id,
        request_id=event.request_id,
        workflow=event.meta.workflow,
        score=event.score if event.HasField("score") else None,
        label=event.label,
        correction_digest=text_digest(event.correction) if event.correction else "",
    )
