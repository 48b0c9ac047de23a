"""An OpenAI chat completions request body -> the gateway's ``GenerateRequest`` and what only
the OpenAI door needs (``ChatOptions``).

Every refusal is an InvalidArgument naming the parameter as OpenAI spells it (``messages[2].content``,
``n``, ``response_format``); unknown top-level fields are ignored, as OpenAI ignores them. Past tool
calls of an assistant message travel as the canonical ``<tool_call>`` text the prompt renderer and
the training data use (cumulus.graders.tool_parsing), so a conversation sent through this door
renders and is captured exactly as one sent through gRPC.

The workflow is named by the ``x-cumulus-workflow`` header or ``metadata.cumulus_workflow``, the
session by ``x-cumulus-session-key``; OpenAI's ``user`` is the end user (metadata ``user``, what
`cumulus erase --user` looks for).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import SchemaError, validators

from cumulus.errors import InvalidArgument
from cumulus.graders.tool_parsing import ToolCall, render_tool_calls
from cumulus.privacy.events import USER_METADATA
from cumulus.v1 import common_pb2, gateway_pb2

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
WORKFLOW_HEADER, SESSION_HEADER = "x-cumulus-workflow", "x-cumulus-session-key"
WORKFLOW_METADATA = "cumulus_workflow"
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_TOKENS = 1 << 20
"""Bounds the field before it reaches the proto (uint32); the gateway's own cap applies after."""


@dataclass(frozen=True)
class ChatOptions:
    """The parts of an OpenAI request the gateway's own request has no field for."""

    model: str
    stream: bool = False
    include_usage: bool = False
    offer_tools: bool = True
    """False for ``tool_choice: none``: tools are described to no model, answers are text."""
    response_format: Mapping[str, Any] = field(default_factory=dict)
    """``json_object`` or ``json_schema`` (with its checked schema); empty for text."""


def parse_chat(body: Any, headers: Mapping[str, str]) -> tuple[gateway_pb2.GenerateRequest, ChatOptions]:
    """The request and options of an OpenAI ``/v1/chat/completions`` body (already JSON-decoded)."""
    if not isinstance(body, dict):
        raise InvalidArgument("body", "must be a JSON object")
    model = _typed(body, "model", str, required=True)
    if _typed(body, "n", int) not in (None, 1):
        raise InvalidArgument("n", "only n=1 is supported: send one request per completion")
    options = _stream_options(body)
    request = gateway_pb2.GenerateRequest(
        messages=[_message(i, m) for i, m in enumerate(_typed(body, "messages", list, required=True))],
        params=_params(body),
        metadata=_metadata(body),
        session_key=headers.get(SESSION_HEADER, ""),
    )
    named = request.metadata.pop(WORKFLOW_METADATA, "")  # a routing hint, not the app's metadata
    request.workflow = headers.get(WORKFLOW_HEADER) or named
    offer_tools = _tool_choice(body.get("tool_choice"))
    if offer_tools:
        request.tools.extend(_tool(i, t) for i, t in enumerate(_typed(body, "tools", list) or []))
    response_format = _response_format(body.get("response_format"), request, options["stream"])
    return request, ChatOptions(model, offer_tools=offer_tools, response_format=response_format, **options)


def _typed(body: Mapping[str, Any], name: str, kind: type, *, required: bool = False, where: str = "") -> Any:
    value = body.get(name)
    param = f"{where}{name}"
    if value is None:
        if required:
            raise InvalidArgument(param, "required")
        return None
    # bool is an int in Python; JSON's true is no number, and an int is a valid float.
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if not ok and not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
        raise InvalidArgument(param, f"must be {_KIND_NAMES[kind]}, got {type(value).__name__}")
    return value


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
               dict: "an object"}  # fmt: skip


def _stream_options(body: Mapping[str, Any]) -> dict[str, bool]:
    stream = bool(_typed(body, "stream", bool))
    stream_options = _typed(body, "stream_options", dict) or {}
    if stream_options and not stream:
        raise InvalidArgument("stream_options", "only allowed when stream is true")
    include_usage = _typed(stream_options, "include_usage", bool, where="stream_options.")
    return {"stream": stream, "include_usage": bool(include_usage)}


def _message(i: int, message: Any) -> common_pb2.ChatMessage:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise InvalidArgument(where, "must be an object with a role and content")
    role = _typed(message, "role", str, required=True, where=f"{where}.")
    if role not in ROLES:
        raise InvalidArgument(f"{where}.role", f"unknown role {role!r}: one of {', '.join(ROLES)}")
    content = _content(where, message.get("content"))
    calls = _typed(message, "tool_calls", list, where=f"{where}.") if role == "assistant" else None
    if calls:
        rendered = render_tool_calls([_past_call(f"{where}.tool_calls[{j}]", c) for j, c in enumerate(calls)])
        content = f"{content}\n{rendered}" if content else rendered
    return common_pb2.ChatMessage(
        role=ROLES[role],
        content=content,
        name=_typed(message, "name", str, where=f"{where}.") or "",
        tool_call_id=_typed(message, "tool_call_id", str, where=f"{where}.") or "",
    )


def _content(where: str, content: Any) -> str:
    """A string, or text parts joined; null (an assistant message of tool calls only) is ''."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidArgument(f"{where}.content", "must be a string or an array of text parts")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise InvalidArgument(
                f"{where}.content[{j}].type", f"only text parts are supported, got {kind!r}"
            )
        texts.append(part["text"])
    return "".join(texts)


def _past_call(where: str, call: Any) -> ToolCall:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidArgument(f"{where}.function", "must be an object with a name and arguments")
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{where}.function.arguments", f"not a JSON string: {exc}") from exc
    if not isinstance(arguments, dict):
        raise InvalidArgument(f"{where}.function.arguments", "must encode a JSON object")
    return ToolCall(function["name"], arguments)


def _params(body: Mapping[str, Any]) -> common_pb2.GenerationParams:
    max_tokens = _typed(body, "max_completion_tokens", int) or _typed(body, "max_tokens", int) or 0
    if not 0 <= max_tokens <= _MAX_TOKENS:
        raise InvalidArgument("max_tokens", f"must be in [1, {_MAX_TOKENS}], got {max_tokens}")
    _typed(body, "seed", int)  # accepted; sampling is not seeded on Triton yet (greedy is exact)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidArgument("stop", "must be a string or an array of strings")
    return common_pb2.GenerationParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        stop=stops,
    )


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = _typed(body, name, float)
    if value is not None and not low <= value <= high:
        raise InvalidArgument(name, f"must be in [{low:g}, {high:g}], got {value}")
    return float(value or 0.0)


def _metadata(body: Mapping[str, Any]) -> dict[str, str]:
    metadata = _typed(body, "metadata", dict) or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidArgument("metadata", "values must be strings")
    user = _typed(body, "user", str)
    return {**metadata, **({USER_METADATA: user} if user else {})}


def _tool_choice(choice: Any) -> bool:
    """Whether the models are offered the tools; a choice no model here can be held to is refused."""
    if choice in (None, "auto"):
        return True
    if choice == "none":
        return False
    raise InvalidArgument(
        "tool_choice",
        f"{json.dumps(choice)[:80]} cannot be honoured: the models here cannot be forced to call a tool",
        fix='send "auto" (or leave it out) and check finish_reason == "tool_calls"',
    )


def _tool(i: int, tool: Any) -> common_pb2.Tool:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
        raise InvalidArgument(f"tools[{i}]", 'must be {"type": "function", "function": {...}}')
    where = f"tools[{i}].function."
    parameters = _typed(function, "parameters", dict, where=where)
    return common_pb2.Tool(
        name=_typed(function, "name", str, required=True, where=where),
        description=_typed(function, "description", str, where=where) or "",
        parameters_json=json.dumps(parameters) if parameters is not None else "",
    )


def _response_format(value: Any, request: gateway_pb2.GenerateRequest, stream: bool) -> dict[str, Any]:
    if value is None:
        return {}
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        if not any("json" in m.content.lower() for m in request.messages):
            raise InvalidArgument(
                "messages", "must contain the word 'json' to use response_format json_object"
            )
        return {"type": kind}
    if kind != "json_schema":
        raise InvalidArgument(
            "response_format", f"type must be text, json_object or json_schema, got {kind!r}"
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not _SCHEMA_NAME.fullmatch(str(spec.get("name", ""))):
        raise InvalidArgument("response_format.json_schema.name", "required: 1-64 of a-z, A-Z, 0-9, _ and -")
    schema = spec.get("schema", {})
    try:
        validators.validator_for(schema).check_schema(schema)
    except (SchemaError, TypeError, AttributeError) as exc:
        raise InvalidArgument("response_format.json_schema.schema", f"not a JSON schema: {exc}") from exc
    if stream:  # an answer is checked whole: its deltas would be out before it could fail
        raise InvalidArgument(
            "response_format",
            "json_schema cannot be honoured with stream: true here",
            fix="send stream: false",
        )
    return {"type": kind, "schema": schema}
