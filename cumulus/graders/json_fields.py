"""``json``: the candidate's JSON holds the same fields with the same values as live's.

Both outputs are flattened into ``path -> value`` leaves (``{"a": {"b": [1]}}`` -> ``a.b[0] = 1``),
so key order never matters and a nested difference costs one field, not the whole object. The
score is the F1 of the candidate's fields against live's (precision: candidate fields that are
right; recall: live fields the candidate got right); invalid candidate JSON scores 0. Values
compare as in :func:`cumulus.graders.normalize.values_equal`: ``1 == 1.0``, strings by case and
collapsed whitespace.
"""

from __future__ import annotations

import json
from typing import Any

from cumulus.graders.base import CaseGrader, Grade, GradeCase, UngradablePair
from cumulus.graders.normalize import strip_code_fence, values_equal

_MAX_LISTED = 10  # mismatching paths named in the details; the counts carry the rest


def parse_json_output(text: str) -> Any:
    """The JSON object or array a model wrote (a Markdown fence around it is fine); None when it is not."""
    try:
        value = json.loads(strip_code_fence(text))
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a JSON value by path; an empty object or array is a leaf of its own."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


class JsonGrader(CaseGrader):
    """Field-level F1 against live's JSON; passes at ``pass_f1`` or above (default: every field)."""

    name = "json"

    def __init__(self, pass_f1: float = 1.0) -> None:
        self.pass_f1 = pass_f1

    def grade(self, case: GradeCase) -> Grade:
        live = parse_json_output(case.live)
        if live is None:
            raise UngradablePair("the live output is not a JSON object or array")
        candidate = parse_json_output(case.candidate)
        if candidate is None:
            return Grade(self.name, 0.0, False, {"valid": False, "error": "candidate output is not JSON"})
        live_fields, candidate_fields = flatten(live), flatten(candidate)
        matched = [
            p for p, v in candidate_fields.items() if p in live_fields and values_equal(v, live_fields[p])
        ]
        precision = len(matched) / len(candidate_fields)
        recall = len(matched) / len(live_fields)
        f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
        details: dict[str, Any] = {
            "valid": True,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "live_fields": len(live_fields),
            "candidate_fields": len(candidate_fields),
        }
        matched_set = set(matched)
        wrong = [p for p in candidate_fields if p in live_fields and p not in matched_set]
        missing = [p for p in live_fields if p not in candidate_fields]
        extra = [p for p in candidate_fields if p not in live_fields]
        for label, paths in (("wrong", wrong), ("missing", missing), ("extra", extra)):
            if paths:
                details[label] = paths[:_MAX_LISTED]
        return Grade(self.name, round(f1, 6), f1 >= self.pass_f1, details)
