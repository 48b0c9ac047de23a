"""Which grader a pair gets, the fallback when a configured one cannot read live, and escalation."""

from __future__ import annotations

import pytest

from cumulus.graders import GradeCase, GraderSettings, GraderSuite, PairwiseGrader, ToolSchema, detect_grader
from tests.unit.graders.fakes import ScriptedJudge, WordEmbedder

TOOLS = [ToolSchema("lookup", {"properties": {"q": {"type": "string"}}})]


@pytest.mark.parametrize(
    ("live", "tools", "grader"),
    [
        ('<tool_call>\n{"name": "lookup", "arguments": {"q": "x"}}\n</tool_call>', [], "tool_call"),
        ('{"name": "lookup", "arguments": {"q": "x"}}', [], "tool_call"),
        ("lookup(q='x')", TOOLS, "tool_call"),
        ("lookup(q='x')", [], "label"),  # a Python-style call counts only for declared tools
        ('{"name": "Ada", "age": 3}', [], "json"),
        ("```json\n[1, 2]\n```", [], "json"),
        ("billing", [], "label"),
        ("42", [], "label"),
        ("The invoice total is 42 euros.\nIt is due in March.", [], "semantic"),
        ("x" * 65, [], "semantic"),
    ],
)
def test_detects_the_grader_from_the_live_output(live: str, tools: list[ToolSchema], grader: str) -> None:
    assert detect_grader(GradeCase(live=live, candidate="", tools=tools)) == grader


def test_configured_grader_wins_and_gives_way_when_it_cannot_read_live() -> None:
    suite = GraderSuite(GraderSettings(workflow_graders={"wf": "json"}), embedder=WordEmbedder())
    configured, fallback = suite.grade_deterministic(
        [
            GradeCase(live='{"a": 1}', candidate='{"a": 1.0}', workflow="wf"),
            GradeCase(live="billing", candidate="Billing", workflow="wf"),
        ]
    )
    assert configured.grader == "json" and configured.passed
    assert fallback.grader == "label" and fallback.passed
    assert fallback.details["fallback_from"] == "json"


def test_semantic_cases_are_embedded_in_one_batch_and_identical_texts_skip_the_model() -> None:
    embedder = WordEmbedder()
    suite = GraderSuite(GraderSettings(semantic_threshold=0.6, label_max_chars=5), embedder=embedder)
    grades = suite.grade_deterministic(
        [
            GradeCase(live="the cat sat on the mat", candidate="the cat sat on a mat"),
            GradeCase(live="the cat sat on the mat", candidate="dogs bark loudly at night"),
            GradeCase(live="same words here", candidate="Same  words here"),
        ]
    )
    assert [g.grader for g in grades] == ["semantic"] * 3
    assert [g.passed for g in grades] == [True, False, True]
    assert grades[2].score == 1.0
    assert embedder.calls == [4]  # two cases, live and candidate each, one call


async def test_the_llm_judge_regrades_only_failures_of_escalated_graders() -> None:
    judge = ScriptedJudge(lambda a, b: "T")
    suite = GraderSuite(
        GraderSettings(semantic_threshold=0.9, label_max_chars=10, workflow_graders={"wf-p": "pairwise"}),
        embedder=WordEmbedder(),
        judge=PairwiseGrader(judge),
    )
    outcomes = await suite.grade(
        [
            GradeCase(live="a long answer about cats and mats", candidate="a reply on dogs"),  # semantic fail
            GradeCase(live="billing", candidate="shipping"),  # label fail, not escalated
            GradeCase(live="billing", candidate="shipping", workflow="wf-p"),  # pairwise workflow
            GradeCase(
                live="a long answer about cats and mats", candidate="a long answer about cats and mats"
            ),
        ]
    )
    assert [[g.grader for g in o.grades] for o in outcomes] == [
        ["semantic", "pairwise"],
        ["label"],
        ["label", "pairwise"],
        ["semantic"],
    ]
    assert outcomes[0].final.passed and not outcomes[1].final.passed
    assert len(judge.questions) == 4
