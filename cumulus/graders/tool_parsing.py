"""Reading tool calls out of model output, in the formats the served models write them.

- Qwen2.5 (and the prompt renderer's protocol for SmolLM2): one or more
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks, prose around them allowed;
  a final block cut off before its closing tag (max_tokens) still counts.
- Bare JSON: ``{"name": ..., "arguments": ...}`` (or ``"parameters"``), an OpenAI-style
  ``{"function": {...}}`` wrapper, or a list of those; ``arguments`` may be a JSON string.
- Python calls, as BFCL prompts models to answer: ``func(a=1)`` or ``[f(a=1), g.h(b="x")]``.
  Positional arguments take the names of the tool schema's properties, in order.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cumulus.graders.base import ToolSchema
from cumulus.graders.normalize import strip_code_fence

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
# A bare object is a call only when it is nothing but one: {"name": "Ada", "age": 3} is data.
_CALL_KEYS = frozenset({"name", "arguments", "parameters", "id", "type"})


@dataclass(frozen=True)
class ToolCall:
    """One function call: its name and its arguments by name."""

    name: str
    arguments: Mapping[str, Any]


def parse_tool_calls(text: str, tools: Sequence[ToolSchema] = ()) -> list[ToolCall] | None:
    """The calls in ``text``, or None when it is not a tool call in any known format.

    ``tools`` maps positional arguments of Python-style calls to names; without a schema they
    are named ``_0``, ``_1``...
    """
    if "<tool_call>" in text:
        blocks = _TOOL_CALL_BLOCK.findall(text)
        calls = [_json_call(block.strip()) for block in blocks]
        return None if not calls or any(call is None for call in calls) else [c for c in calls if c]
    body = strip_code_fence(text)
    if body[:1] in "{[":
        try:
            return _json_calls(json.loads(body))
        except ValueError:
            pass  # not JSON: "[f(a=1)]" is a Python list of calls
    return _python_calls(body, tools)


def render_tool_calls(calls: Sequence[ToolCall]) -> str:
    """``calls`` in the one canonical format: Qwen2.5's ``<tool_call>`` blocks of compact JSON.

    What the prompt renderer's tool protocol asks every model for; training data uses it so a
    small model learns one format instead of every variant the live model happened to write.
    """
    blocks = (
        json.dumps({"name": call.name, "arguments": dict(call.arguments)}, ensure_ascii=False)
        for call in calls
    )
    return "\n".join(f"<tool_call>\n{block}\n</tool_call>" for block in blocks)


def _json_call(block: str) -> ToolCall | None:
    try:
        calls = _json_calls(json.loads(block))
    except ValueError:
        return None
    return calls[0] if calls and len(calls) == 1 else None


def _json_calls(value: Any) -> list[ToolCall] | None:
    items = value if isinstance(value, list) else [value]
    calls = [_call_from_object(item) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _call_from_object(item: Any) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):  # OpenAI: {"type": "function", "function": {...}}
        item = item["function"]
    if not item.keys() <= _CALL_KEYS or not item.keys() & {"arguments", "parameters"}:
        return None
    name = item.get("name")
    arguments = item.get("arguments", item.get("parameters"))
    if isinstance(arguments, str):  # OpenAI sends arguments as JSON text
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return None
    return ToolCall(name, arguments)


def _python_calls(body: str, tools: Sequence[ToolSchema]) -> list[ToolCall] | None:
    try:
        tree = ast.parse(body, mode="eval").body
    except (SyntaxError, ValueError):
        return None
    nodes = tree.elts if isinstance(tree, ast.List | ast.Tuple) else [tree]
    calls = [_call_from_node(node, tools) for node in nodes]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _call_from_node(node: ast.expr, tools: Sequence[ToolSchema]) -> ToolCall | None:
    if not isinstance(node, ast.Call):
        return None
    name = _dotted_name(node.func)
    if name is None or any(kw.arg is None for kw in node.keywords):  # **kwargs: names unknowable
        return None
    schema = next((tool for tool in tools if tool.name == name), None)
    positional_names = list(schema.properties) if schema else []
    arguments: dict[str, Any] = {}
    for index, arg in enumerate(node.args):
        key = positional_names[index] if index < len(positional_names) else f"_{index}"
        arguments[key] = _literal(arg)
    for keyword in node.keywords:
        arguments[str(keyword.arg)] = _literal(keyword.value)
    return ToolCall(name, arguments)


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _dotted_name(node.value)
        return f"{owner}.{node.attr}" if owner else None
    return None


def _literal(node: ast.expr) -> Any:
    """A literal's value; anything else (a variable, an expression) as its source text, as BFCL does."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.unparse(node)
    return list(value) if isinstance(value, tuple) else value
