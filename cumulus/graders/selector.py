"""Choosing and running the graders for a batch of shadow pairs.

Per pair: the workflow's configured grader, else the one its live output's shape calls for
(:func:`detect_grader`). Detection looks at one pair only, so a redelivered pair always gets the
same grader (and so the same verdict id). Deterministic graders always run first; the LLM judge
(optional) then re-grades the pairs they failed when the workflow is configured ``pairwise`` or
its grader is in ``escalate`` (by default ``semantic``: a low cosine is where "different but as
good" is most likely). A configured grader that cannot read the live output (``json`` on prose)
gives way to the detected one, and says so in the details.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from cumulus.graders.base import CaseGrader, Grade, GradeCase, UngradablePair
from cumulus.graders.json_fields import JsonGrader, parse_json_output
from cumulus.graders.label import LabelGrader
from cumulus.graders.normalize import strip_code_fence
from cumulus.graders.pairwise import PairwiseGrader
from cumulus.graders.semantic import Embedder, MiniLMEmbedder, SemanticGrader
from cumulus.graders.tool_call import ToolCallGrader
from cumulus.graders.tool_parsing import parse_tool_calls


def detect_grader(case: GradeCase, label_max_chars: int = 64) -> str:
    """``tool_call``, ``json``, ``label`` or ``semantic``, from the live output's shape.

    A tool call in an explicit format (``<tool_call>``, JSON) counts whatever its name; a
    Python-style call only when it calls tools the request declared (``yes(no)`` is prose).
    """
    calls = parse_tool_calls(case.live, case.tools)
    if calls and (
        _explicit_call_format(case.live) or {c.name for c in calls} <= {t.name for t in case.tools}
    ):
        return "tool_call"
    if parse_json_output(case.live) is not None:
        return "json"
    text = case.live.strip()
    if "\n" not in text and len(text) <= label_max_chars:
        return "label"
    return "semantic"


def _explicit_call_format(text: str) -> bool:
    if "<tool_call>" in text:
        return True
    try:
        json.loads(strip_code_fence(text))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class GraderSettings:
    """Thresholds and choices; the judge builds them from ``JudgeConfig``, the trainer from its own."""

    semantic_threshold: float = 0.8
    json_pass_f1: float = 1.0
    label_max_chars: int = 64
    workflow_graders: Mapping[str, str] = field(default_factory=dict)
    """Workflow -> grader name; a workflow not named here is detected per pair."""
    escalate: frozenset[str] = frozenset({"semantic"})
    """Graders whose failures the LLM judge re-grades (when there is one)."""


@dataclass(frozen=True)
class Outcome:
    """Every grade one case got, in order: the deterministic one first, the LLM judge's after it."""

    grades: tuple[Grade, ...]

    @property
    def final(self) -> Grade:
        """The grade that becomes the verdict."""
        return self.grades[-1]


class GraderSuite:
    """Runs the right graders for each case (see the module docstring)."""

    def __init__(
        self,
        settings: GraderSettings = GraderSettings(),
        *,
        embedder: Embedder | None = None,
        judge: PairwiseGrader | None = None,
    ) -> None:
        self.settings = settings
        self.judge = judge
        self.semantic = SemanticGrader(embedder or MiniLMEmbedder(), settings.semantic_threshold)
        self.case_graders: dict[str, CaseGrader] = {
            "label": LabelGrader(),
            "json": JsonGrader(settings.json_pass_f1),
            "tool_call": ToolCallGrader(),
        }

    def chosen_grader(self, case: GradeCase) -> str:
        """The deterministic grader for ``case`` (``pairwise`` workflows start with the detected one)."""
        configured = self.settings.workflow_graders.get(case.workflow)
        if configured and configured != "pairwise":
            return configured
        return detect_grader(case, self.settings.label_max_chars)

    def grade_deterministic(self, cases: Sequence[GradeCase]) -> list[Grade]:
        """The deterministic grade of each case, in order (synchronous: the trainer's gate uses it)."""
        grades: list[Grade | None] = [None] * len(cases)
        semantic: list[int] = []
        fallbacks: dict[int, tuple[str, str]] = {}
        for index, case in enumerate(cases):
            name = self.chosen_grader(case)
            try:
                if name in self.case_graders:
                    grades[index] = self.case_graders[name].grade(case)
                    continue
            except UngradablePair as exc:
                fallbacks[index] = (name, exc.message)
                name = detect_grader(case, self.settings.label_max_chars)
                if name in self.case_graders:  # detection guarantees this one can read live
                    grades[index] = self.case_graders[name].grade(case)
                    continue
            semantic.append(index)
        for index, grade in zip(
            semantic, self.semantic.grade_batch([cases[i] for i in semantic]), strict=True
        ):
            grades[index] = grade
        done = [grade for grade in grades if grade is not None]
        for index, (name, reason) in fallbacks.items():
            done[index] = replace(
                done[index], details={**done[index].details, "fallback_from": name, "reason": reason}
            )
        return done

    async def grade(self, cases: Sequence[GradeCase]) -> list[Outcome]:
        """Deterministic graders (in a worker thread), then the LLM judge on the failures it should see."""
        first = await asyncio.to_thread(self.grade_deterministic, cases)
        outcomes = [Outcome((grade,)) for grade in first]
        if self.judge is None:
            return outcomes
        escalated = [
            i
            for i, (case, grade) in enumerate(zip(cases, first, strict=True))
            if self._escalates(case, grade)
        ]
        judged = await self.judge.grade_batch([cases[i] for i in escalated])
        for index, grade in zip(escalated, judged, strict=True):
            outcomes[index] = Outcome((first[index], grade))
        return outcomes

    def _escalates(self, case: GradeCase, grade: Grade) -> bool:
        configured = self.settings.workflow_graders.get(case.workflow)
        return not grade.passed and (configured == "pairwise" or grade.grader in self.settings.escalate)
