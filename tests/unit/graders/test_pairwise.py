"""The pairwise LLM judge: both orders asked, a win only when it holds both ways."""

from __future__ import annotations

import pytest

from cumulus.graders import GradeCase, PairwiseGrader
from cumulus.graders.pairwise import combine, parse_choice
from tests.unit.graders.fakes import ScriptedJudge

CASE = GradeCase(
    live="LIVE ANSWER", candidate="CANDIDATE ANSWER", messages=[{"role": "user", "content": "hi"}]
)


def prefers(text: str) -> ScriptedJudge:
    """A consistent judge: always picks the response that is ``text``."""
    return ScriptedJudge(lambda a, b: "A" if a == text else "B" if b == text else "T")


async def test_asks_both_orders_with_the_conversation() -> None:
    judge = prefers("CANDIDATE ANSWER")
    await PairwiseGrader(judge).grade(CASE)
    assert len(judge.questions) == 2
    assert judge.questions[0].index("LIVE ANSWER") < judge.questions[0].index("CANDIDATE ANSWER")
    assert judge.questions[1].index("CANDIDATE ANSWER") < judge.questions[1].index("LIVE ANSWER")
    assert all("user: hi" in q for q in judge.questions)


@pytest.mark.parametrize(
    ("judge", "outcome", "score", "passed", "consistent"),
    [
        (prefers("CANDIDATE ANSWER"), "candidate", 1.0, True, True),
        (prefers("LIVE ANSWER"), "live", 0.0, False, True),
        (ScriptedJudge(lambda a, b: "T"), "tie", 0.5, True, True),
        # Position bias: always "A" = the first response, whichever it is -> no win for anyone.
        (ScriptedJudge(lambda a, b: "A"), "tie", 0.5, True, False),
        (ScriptedJudge(lambda a, b: " B is better."), "tie", 0.5, True, False),
        (ScriptedJudge(lambda a, b: "I cannot decide"), "tie", 0.5, True, False),
    ],
)
async def test_a_win_counts_only_when_it_holds_in_both_orders(
    judge: ScriptedJudge, outcome: str, score: float, passed: bool, consistent: bool
) -> None:
    grade = await PairwiseGrader(judge).grade(CASE)
    assert (grade.grader, grade.details["outcome"], grade.score, grade.passed) == (
        "pairwise",
        outcome,
        score,
        passed,
    )
    assert grade.details["consistent"] is consistent


def test_parse_choice_and_combine() -> None:
    assert [parse_choice(t) for t in ("A", " b\n", "Tie.", "Response B", "none", "")] == [
        "A",
        "B",
        "T",
        "B",
        None,
        None,
    ]
    assert combine("B", "A") == ("candidate", True)
    assert combine("A", "B") == ("live", True)
    assert combine("T", "T") == ("tie", True)
    assert combine("B", "B") == ("tie", False)
    assert combine(None, None) == ("tie", False)


async def test_a_batch_is_graded_concurrently_in_order() -> None:
    cases = [GradeCase(live=f"L{i}", candidate=f"C{i}") for i in range(5)]
    grades = await PairwiseGrader(prefers("C3"), concurrency=2).grade_batch(cases)
    assert [g.details["outcome"] for g in grades] == ["tie", "tie", "tie", "candidate", "tie"]
