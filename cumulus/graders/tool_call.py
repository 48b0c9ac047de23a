"""``tool_call``: the candidate calls the same functions with equivalent arguments as live.

Judged the way BFCL's AST checker judges a call against its gold answer, with live's call as
the gold: the function name must match exactly; argument order never matters; numbers compare by
value (``5 == 5.0``); strings compare after BFCL's standardisation (case, spaces and ``,./-_*^``
ignored); lists keep their order; dicts compare key by key. An argument one side leaves out is
fine only when the tool schema declares a ``default`` and the other side passes exactly that.
Several calls (parallel calling) match in any order, one to one.

Score: matched calls / max(live calls, candidate calls); passed only when every call matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cumulus.graders.base import CaseGrader, Grade, GradeCase, ToolSchema, UngradablePair
from cumulus.graders.normalize import standardise_argument, values_equal
from cumulus.graders.tool_parsing import ToolCall, parse_tool_calls

_MAX_LISTED = 5
_PROSE_DEFAULT = re.compile(
    r"\bdefaults?(?:\s+value)?(?:\s+is|\s+to|\s*:|\s*=)\s*"
    r"(?:(?P<q>['\"])(?P<quoted>[^'\"]*)(?P=q)|(?P<bare>-?[\w.]+?))(?=[\s,;.)]*(?:\s|$|\)))",
    re.IGNORECASE,
)


def call_mismatch(live: ToolCall, candidate: ToolCall, schema: ToolSchema | None) -> str | None:
    """Why ``candidate`` is not equivalent to ``live`` (the first reason found), or None when it is."""
    if candidate.name != live.name:
        return f"function {candidate.name!r} instead of {live.name!r}"
    properties = schema.properties if schema else {}
    required = set(schema.parameters.get("required", ())) if schema else set()
    for key in sorted(set(live.arguments) | set(candidate.arguments)):
        in_live, in_candidate = key in live.arguments, key in candidate.arguments
        if in_live and in_candidate:
            if not values_equal(live.arguments[key], candidate.arguments[key], standardise_argument):
                got, expected = _short(candidate.arguments[key]), _short(live.arguments[key])
                return f"{live.name}: argument {key!r} is {got}, live passed {expected}"
            continue
        present = live.arguments[key] if in_live else candidate.arguments[key]
        if not _is_default(properties.get(key), present, key in required):
            side = "candidate" if in_live else "live"
            value = _short(present)
            return f"{live.name}: argument {key!r} missing on the {side} side; {value} is not its default"
    return None


def _is_default(prop: Any, value: Any, required: bool) -> bool:
    """Leaving an optional argument out equals passing its declared default (and nothing else)."""
    if required or not isinstance(prop, Mapping):
        return False
    found, default = declared_default(prop)
    return found and values_equal(default, value, standardise_argument)


def declared_default(prop: Mapping[str, Any]) -> tuple[bool, Any]:
    """The schema's ``default``, else one its description states (``"... Default is 'kg'."``).

    Many real tool schemas (and most of BFCL's) give the default only in prose; only a quoted
    value or a single number/boolean/word right after "default is/to/:" is taken from it.
    """
    if "default" in prop:
        return True, prop["default"]
    match = _PROSE_DEFAULT.search(str(prop.get("description", "")))
    if match is None:
        return False, None
    quoted, bare = match.group("quoted"), match.group("bare")
    if quoted is not None:
        return True, quoted
    lowered = bare.lower()
    if lowered in ("true", "false"):
        return True, lowered == "true"
    try:
        return True, float(bare)
    except ValueError:
        return True, bare


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def match_calls(
    live: Sequence[ToolCall], candidate: Sequence[ToolCall], tools: Sequence[ToolSchema]
) -> tuple[int, list[str]]:
    """Pair each live call with an equivalent, not yet used candidate call (any order).

    Returns how many live calls found a partner, and why the others did not (their closest
    same-name candidate's mismatch, else the first candidate's).
    """
    schemas = {tool.name: tool for tool in tools}
    used: set[int] = set()
    problems: list[str] = []
    for live_call in live:
        reasons: list[str] = []
        for index, candidate_call in enumerate(candidate):
            if index in used:
                continue
            reason = call_mismatch(live_call, candidate_call, schemas.get(live_call.name))
            if reason is None:
                used.add(index)
                break
            reasons.append(reason)
        else:
            same_name = [r for r in reasons if not r.startswith("function ")]
            problems.append((same_name or reasons or [f"no candidate call left for {live_call.name}"])[0])
    return len(used), problems


class ToolCallGrader(CaseGrader):
    """Equivalence of tool calls as BFCL's AST checker judges them (see the module docstring)."""

    name = "tool_call"

    def grade(self, case: GradeCase) -> Grade:
        live = parse_tool_calls(case.live, case.tools)
        if not live:
            raise UngradablePair("the live output is not a tool call")
        candidate = parse_tool_calls(case.candidate, case.tools)
        if not candidate:
            return Grade(
                self.name, 0.0, False, {"error": "candidate made no tool call", "live_calls": len(live)}
            )
        matched, problems = match_calls(live, candidate, case.tools)
        total = max(len(live), len(candidate))
        passed = matched == len(live) == len(candidate)
        details: dict[str, Any] = {
            "live_calls": len(live),
            "candidate_calls": len(candidate),
            "matched": matched,
        }
        if len(live) != len(candidate):
            problems.insert(0, f"{len(candidate)} calls instead of {len(live)}")
        if problems:
            details["errors"] = problems[:_MAX_LISTED]
        return Grade(self.name, round(matched / total, 6), passed, details)
