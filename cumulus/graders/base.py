"""The vocabulary every grader shares: what is graded (``GradeCase``), what comes out (``Grade``).

A grader compares a candidate's output with the live model's output for the same prompt and
answers "is the candidate as good as live here?" with a score in [0, 1] and pass/fail. The live
output is the reference: the judge grades adapters in shadow, where no gold answer exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cumulus.errors import CumulusError

GRADER_NAMES = ("label", "json", "tool_call", "semantic", "pairwise")
"""Every grader, by the name verdicts carry in ``Verdict.grader``."""


class UngradablePair(CumulusError):
    """The grader cannot judge this pair at all (e.g. the live output is not JSON for ``json``).

    Not the candidate's fault, so never a failing grade: the caller falls back to the grader
    detected from the live output's shape.
    """


@dataclass(frozen=True)
class ToolSchema:
    """A tool the request declared: its name and the JSON schema of its arguments."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, name: str, parameters_json: str) -> ToolSchema:
        """From the proto's ``Tool`` fields; an unreadable schema is an empty one (no defaults known)."""
        try:
            parameters = json.loads(parameters_json) if parameters_json else {}
        except ValueError:
            parameters = {}
        return cls(name, parameters if isinstance(parameters, dict) else {})

    @property
    def properties(self) -> Mapping[str, Any]:
        props = self.parameters.get("properties")
        return props if isinstance(props, dict) else {}


@dataclass(frozen=True)
class GradeCase:
    """One shadow pair as the graders see it."""

    live: str
    candidate: str
    workflow: str = ""
    messages: Sequence[Mapping[str, str]] = ()
    """The chat that produced both outputs (role/content dicts); only the LLM judge reads it."""
    tools: Sequence[ToolSchema] = ()
    pair_id: str = ""
    """For log lines only."""

    def tool(self, name: str) -> ToolSchema | None:
        return next((tool for tool in self.tools if tool.name == name), None)


@dataclass(frozen=True)
class Grade:
    """A grader's answer for one case."""

    grader: str
    score: float
    """In [0, 1]; 1 = as good as live."""
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)
    """Grader-specific, JSON-serialisable: what matched, what did not, and why."""

    def details_json(self) -> str:
        return json.dumps(self.details, sort_keys=True, default=str, separators=(",", ":"))


class Grader(Protocol):
    """A synchronous grader: label, json, tool_call and semantic."""

    name: str

    def grade_batch(self, cases: Sequence[GradeCase]) -> list[Grade]:
        """One grade per case, in order; never raises UngradablePair (only ``CaseGrader.grade`` does)."""
        ...


class CaseGrader:
    """Base of the graders that grade one case at a time (all but ``semantic``)."""

    name = ""

    def grade(self, case: GradeCase) -> Grade:
        """Grade one case; raises UngradablePair when the live output does not fit this grader."""
        raise NotImplementedError

    def grade_batch(self, cases: Sequence[GradeCase]) -> list[Grade]:
        return [self.grade(case) for case in cases]
