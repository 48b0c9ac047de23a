"""The demo's workload: every BFCL question becomes a request the gateway accepts, in one workflow."""

from __future__ import annotations

import pytest

from cumulus.config import load_config
from cumulus.graders import ToolCall
from ops.demo.bfcl import gold_correct, json_schema, load_items, split, tool_name
from ops.demo.workloads.bfcl import request_for
from services.gateway.validation import Limits, validate_generate
from services.gateway.workflows import resolve_chat

pytest.importorskip("bfcl_eval", reason="bfcl-eval is installed by scripts/setup.sh (model-assets.txt)")


def test_every_simple_python_question_passes_gateway_validation_and_shares_a_workflow() -> None:
    limits = Limits.from_config(load_config(env={}))
    workflows = set()
    for item in load_items("simple_python"):
        request = request_for(item, f"r-{item.id}")
        validate_generate(request, limits)  # raises InvalidArgument naming the field otherwise
        chat = [(m.role, m.content) for m in request.messages]
        workflows.add(resolve_chat("demo", "", chat, [t.name for t in request.tools]).name)
    assert len(workflows) == 1


def test_bfcl_types_become_json_schema_types() -> None:
    schema = {
        "type": "dict",
        "properties": {
            "x": {"type": "float"},
            "pair": {"type": "tuple", "items": {"type": "integer"}},
            "any": {"type": "any", "description": "whatever"},
            "type": {"type": "string"},  # a parameter called "type" is a name, not a keyword
        },
    }
    assert json_schema(schema) == {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "pair": {"type": "array", "items": {"type": "integer"}},
            "any": {"description": "whatever"},
            "type": {"type": "string"},
        },
    }


def test_split_is_fixed_and_disjoint() -> None:
    items = load_items("simple_python")
    train, held = split(items, 300)
    again, _ = split(items, 300)
    assert [i.id for i in train] == [i.id for i in again]
    assert len(train) == 300 and len(held) == 100 and not {i.id for i in train} & {i.id for i in held}


def test_gold_checks_calls_made_with_underscored_tool_names() -> None:
    item = next(i for i in load_items("simple_python") if "." in i.functions[0]["name"])
    name = next(iter(item.gold[0]))
    args = {k: v[0] for k, v in item.gold[0][name].items() if v[0] != ""}
    assert gold_correct(item, [ToolCall(tool_name(name), args)])
    assert not gold_correct(item, [ToolCall(tool_name(name) + "_x", args)])
    assert not gold_correct(item, None)
