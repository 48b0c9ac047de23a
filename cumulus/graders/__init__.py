"""Graders: is a candidate's output as good as the live model's for the same prompt?

Shared by the judge (shadow pairs from Kafka) and the trainer's offline gate (holdout examples).
Each grader compares a candidate output with the live output (the reference) and returns a
``Grade`` (score in [0, 1], pass/fail, details):

- ``label``     normalised exact match (case, whitespace, punctuation ignored)
- ``json``      JSON validity + field-level precision/recall/F1 (nested keys flattened)
- ``tool_call`` same functions, equivalent arguments, the way BFCL's AST checker judges
- ``semantic``  MiniLM embedding cosine against a threshold
- ``pairwise``  an LLM judge asked in both orders (async; optional)

``GraderSuite`` picks the grader per case (configured per workflow, else detected from the live
output's shape) and runs deterministic graders before the LLM judge. Typical use::

    suite = GraderSuite(GraderSettings(workflow_graders={"invoices": "json"}))
    grades = suite.grade_deterministic([GradeCase(live=..., candidate=..., workflow="invoices")])
"""

from cumulus.graders.base import (
    GRADER_NAMES,
    CaseGrader,
    Grade,
    GradeCase,
    Grader,
    ToolSchema,
    UngradablePair,
)
from cumulus.graders.calibration import CalibrationReport, GraderAgreement, cohens_kappa, human_verdict
from cumulus.graders.json_fields import JsonGrader, flatten, parse_json_output
from cumulus.graders.label import LabelGrader
from cumulus.graders.normalize import normalise_label, values_equal
from cumulus.graders.pairwise import JudgeModel, PairwiseGrader
from cumulus.graders.selector import GraderSettings, GraderSuite, Outcome, detect_grader
from cumulus.graders.semantic import Embedder, MiniLMEmbedder, SemanticGrader
from cumulus.graders.tool_call import ToolCallGrader, call_mismatch
from cumulus.graders.tool_parsing import ToolCall, parse_tool_calls, render_tool_calls

__all__ = [
    "GRADER_NAMES",
    "CalibrationReport",
    "CaseGrader",
    "Embedder",
    "Grade",
    "GradeCase",
    "Grader",
    "GraderAgreement",
    "GraderSettings",
    "GraderSuite",
    "JsonGrader",
    "JudgeModel",
    "LabelGrader",
    "MiniLMEmbedder",
    "Outcome",
    "PairwiseGrader",
    "SemanticGrader",
    "ToolCall",
    "ToolCallGrader",
    "ToolSchema",
    "UngradablePair",
    "call_mismatch",
    "cohens_kappa",
    "detect_grader",
    "flatten",
    "human_verdict",
    "normalise_label",
    "parse_json_output",
    "parse_tool_calls",
    "render_tool_calls",
    "values_equal",
]
