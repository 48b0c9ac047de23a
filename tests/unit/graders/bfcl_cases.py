"""Shadow-pair cases from the Berkeley Function Calling Leaderboard (``bfcl-eval``), with BFCL's verdict.

For each BFCL item the "live" answer is the gold call (the first accepted value of every argument,
optional ones included) written the way Qwen2.5 writes it. Candidates are variants of it, each in
another output format and with its arguments (and parallel calls) reordered:

- ``same``: the gold call itself;        ``int_for_float``: ``5`` where the schema says float 5.0;
- ``default_omitted``: an optional argument left out (BFCL's answer marks it optional with "");
- ``alternative_value``: another value BFCL's answer accepts for an argument;
- ``wrong_function``, ``wrong_value``, ``missing_required``: perturbations BFCL must reject.

``bfcl_verdict`` runs BFCL's own AST checker (``ast_checker`` from bfcl-eval) on the candidate
against ``possible_answer``; the grader's verdict on (live, candidate) should agree with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cumulus.graders import ToolCall, ToolSchema
from ops.demo.bfcl import BfclItem, gold_correct, load_items

CATEGORIES = ("simple_python", "multiple", "parallel", "live_simple", "live_multiple")
FORMATS = ("python", "json", "qwen")


@dataclass(frozen=True)
class BfclCase:
    item: BfclItem
    kind: str
    live: str
    candidate: str
    candidate_calls: list[ToolCall]

    @property
    def tools(self) -> list[ToolSchema]:
        return [ToolSchema(f["name"], f["parameters"]) for f in self.item.functions]


def bfcl_verdict(item: BfclItem, calls: list[ToolCall]) -> bool:
    return gold_correct(item, calls)


def _first_accepted(options: dict[str, list[Any]]) -> dict[str, Any]:
    """One concrete argument dict from BFCL's options: the first accepted value of each key.

    Dict-typed values nest the same way (each key -> options), and so do lists of dicts.
    """
    out = {}
    for key, values in options.items():
        accepted = [v for v in values if v != ""]
        if accepted:
            out[key] = _concrete(accepted[0])
    return out


def _concrete(value: Any) -> Any:
    if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
        return _first_accepted(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [_concrete(v) for v in value]
    return value


def gold_calls(item: BfclItem) -> list[ToolCall]:
    return [ToolCall(name, _first_accepted(params)) for entry in item.gold for name, params in entry.items()]


def render(calls: list[ToolCall], fmt: str) -> str:
    if fmt == "qwen":
        blocks = (json.dumps({"name": c.name, "arguments": dict(c.arguments)}) for c in calls)
        return "\n".join(f"<tool_call>\n{b}\n</tool_call>" for b in blocks)
    if fmt == "json":
        objects = [{"name": c.name, "arguments": dict(c.arguments)} for c in calls]
        return json.dumps(objects[0] if len(objects) == 1 else objects)
    python = [f"{c.name}({', '.join(f'{k}={v!r}' for k, v in c.arguments.items())})" for c in calls]
    return python[0] if len(python) == 1 else f"[{', '.join(python)}]"


def _reordered(calls: list[ToolCall]) -> list[ToolCall]:
    return [ToolCall(c.name, dict(reversed(list(c.arguments.items())))) for c in reversed(calls)]


def _schema(item: BfclItem, name: str) -> dict[str, Any]:
    return next((f["parameters"] for f in item.functions if f["name"] == name), {})


def _changed(value: Any) -> Any:
    """A value BFCL cannot accept where ``value`` was expected."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 7
    if isinstance(value, str):
        return value + " elsewhere"
    if isinstance(value, list):
        return [*value, value[0] if value else "extra"]
    if isinstance(value, dict):
        return {**value, "unexpected_key": 1}
    return "changed"


def variants(item: BfclItem) -> Iterator[tuple[str, list[ToolCall]]]:
    """(kind, candidate calls) for one item; kinds that do not apply to it are skipped."""
    gold = gold_calls(item)
    first, params = gold[0], next(iter(item.gold[0].values()))
    schema = _schema(item, first.name)
    properties, required = schema.get("properties", {}), schema.get("required", [])
    yield "same", gold

    def with_args(args: dict[str, Any]) -> list[ToolCall]:
        return [ToolCall(first.name, args), *gold[1:]]

    floats = [k for k, v in first.arguments.items() if properties.get(k, {}).get("type") == "float"]
    floats = [k for k in floats if isinstance(first.arguments[k], float) and first.arguments[k].is_integer()]
    if floats:
        yield "int_for_float", with_args({**first.arguments, floats[0]: int(first.arguments[floats[0]])})
    optional = [k for k in first.arguments if "" in params.get(k, [])]
    if optional:
        yield "default_omitted", with_args({k: v for k, v in first.arguments.items() if k != optional[0]})
    alternatives = [k for k, opts in params.items() if len([o for o in opts if o != ""]) > 1]
    if alternatives:
        key = alternatives[0]
        other = [o for o in params[key] if o != ""][1]
        yield "alternative_value", with_args({**first.arguments, key: other})
    others = [f["name"] for f in item.functions if f["name"] != first.name]
    yield (
        "wrong_function",
        [ToolCall(others[0] if others else first.name + "_v2", first.arguments), *gold[1:]],
    )
    required_present = [k for k in required if k in first.arguments]
    if required_present:
        key = required_present[0]
        yield "wrong_value", with_args({**first.arguments, key: _changed(first.arguments[key])})
        yield "missing_required", with_args({k: v for k, v in first.arguments.items() if k != key})


def cases(categories: tuple[str, ...] = CATEGORIES, per_category: int | None = None) -> Iterator[BfclCase]:
    """Every variant of every item (the first ``per_category`` items of each category)."""
    for category in categories:
        for n, item in enumerate(load_items(category)[:per_category]):
            live = render(gold_calls(item), "qwen")
            for kind, calls in variants(item):
                fmt = FORMATS[n % 2]  # python or JSON: never the live output's own format
                yield BfclCase(item, kind, live, render(_reordered(calls), fmt), calls)
