"""Gold: what a request's feedback says the right answer was, and grading both models against it.

Agreement with live can only tell how well a candidate copies the live model. Where people gave
feedback on a request, that feedback is the reference instead (the judge's gold verdicts, the
trainer's offline gate), and a candidate that is right where live was wrong can win:

- a ``correction`` is the right answer: live and candidate are each graded against it with the
  workflow's grader;
- without one, a positive ``score`` (>= 0.5) or label (good, correct, ...) confirms live's answer:
  live is right, and the candidate is graded against live's answer;
- a negative score or label without a correction says only that live was wrong: a candidate that
  agrees with live is wrong too; one that does not is *unknown* (it may be right or wrong), and the
  pair gives no gold verdict rather than a guessed one;
- anything else (a tag-like label, a comment only) is no gold.

The right class of a classification goes in ``correction`` (a label is read as a judgement of
live's answer, not as an answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cumulus.graders.base import Grade, GradeCase, ToolSchema
from cumulus.graders.calibration import NEGATIVE_LABELS, POSITIVE_LABELS
from cumulus.graders.normalize import normalise_label
from cumulus.graders.selector import GraderSuite

GoldKind = Literal["correction", "confirmed", "refuted"]


@dataclass(frozen=True)
class Gold:
    """The reference one request's feedback gives (see the module docstring)."""

    kind: GoldKind
    correction: str = ""

    @classmethod
    def from_feedback(cls, score: float | None, label: str, correction: str) -> Gold | None:
        """The gold of one feedback, or None when it names no right answer and judges nothing."""
        if correction.strip():
            return cls("correction", correction)
        if score is not None:
            return cls("confirmed" if score >= 0.5 else "refuted")
        normalised = normalise_label(label)
        if normalised in POSITIVE_LABELS:
            return cls("confirmed")
        if normalised in NEGATIVE_LABELS:
            return cls("refuted")
        return None


@dataclass(frozen=True)
class GoldCase:
    """One request to grade against its gold: live's answer, the candidate's, the context."""

    gold: Gold
    live: str
    candidate: str
    workflow: str
    messages: tuple[dict[str, str], ...] = ()
    tools: tuple[ToolSchema, ...] = ()


@dataclass(frozen=True)
class GoldGrade:
    """Candidate and live, each against the gold (the paired test's one observation)."""

    candidate: Grade
    live: Grade


def grade_against_gold(suite: GraderSuite, cases: Sequence[GoldCase]) -> list[GoldGrade | None]:
    """Each case's gold grade, in order; None where the gold cannot tell (``refuted``, candidate differs).

    Deterministic graders only: gold decides promotions, so it must not depend on an LLM judge's mood.
    """
    against_reference: list[GradeCase] = []
    for case in cases:
        reference = case.gold.correction if case.gold.kind == "correction" else case.live
        for answer in (case.candidate, case.live):
            against_reference.append(
                GradeCase(reference, answer, case.workflow, messages=case.messages, tools=case.tools)
            )
    grades = suite.grade_deterministic(against_reference)
    results: list[GoldGrade | None] = []
    for index, case in enumerate(cases):
        candidate, live = grades[2 * index], grades[2 * index + 1]
        if case.gold.kind == "correction":
            results.append(GoldGrade(candidate, live))
        elif case.gold.kind == "confirmed":
            results.append(GoldGrade(candidate, _fixed(live.grader, 1.0, "confirmed by feedback")))
        elif candidate.passed:  # refuted, and the candidate says what live said: wrong as well
            wrong = "agrees with the answer feedback refuted"
            results.append(
                GoldGrade(_fixed(candidate.grader, 0.0, wrong), _fixed(live.grader, 0.0, "refuted"))
            )
        else:
            results.append(None)
    return results


def _fixed(grader: str, score: float, why: str) -> Grade:
    return Grade(grader, score, score >= 0.5, {"gold": why})
