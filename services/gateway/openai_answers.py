"""A served call as OpenAI's ``chat.completion`` (and the pieces its chunks share): tool calls
parsed from the model's own text, finish reasons, usage, the route taken.

Models here answer a tool call as text (the ``<tool_call>`` blocks the prompt renderer asks for,
or another format cumulus.graders.tool_parsing reads); OpenAI clients expect ``tool_calls`` with
the arguments as a JSON string. An answer is a tool call only when every call in it names a tool
the request offered; anything else is content, as the model wrote it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import grpc
from jsonschema import ValidationError, validators

from cumulus.errors import CumulusError
from cumulus.graders.base import ToolSchema
from cumulus.graders.tool_parsing import ToolCall, parse_tool_calls
from cumulus.v1 import common_pb2
from services.gateway.calls import Call
from services.gateway.openai_schema import ChatOptions

_MODES = {
    common_pb2.ROUTE_MODE_LIVE: "live",
    common_pb2.ROUTE_MODE_CANARY: "canary",
    common_pb2.ROUTE_MODE_FALLBACK: "fallback",
    common_pb2.ROUTE_MODE_PROMOTED: "promoted",
}


class UnfitAnswer(CumulusError):
    """The model answered, but not in the ``response_format`` the request asked for."""

    grpc_status = grpc.StatusCode.INTERNAL
    http_status = 502


def completion_id(call: Call) -> str:
    return f"chatcmpl-{call.request_id}"


def route_header(route: common_pb2.Route) -> str:
    """``x-cumulus-route``: which model (and adapter) answered, and why."""
    target = route.target
    parts = [f"mode={_MODES.get(route.mode, 'unknown')}", f"model={target.model}"]
    if target.adapter_id:
        parts.append(f"adapter={target.adapter_id}@{target.adapter_version}")
    return "; ".join(parts)


def headers(call: Call) -> dict[str, str]:
    assert call.outcome is not None
    return {
        "x-cumulus-route": route_header(call.outcome.route),
        "x-cumulus-workflow": call.workflow.name,
        "x-request-id": call.request_id,
    }


def tool_calls(text: str, call: Call) -> list[dict[str, Any]] | None:
    """``text`` as OpenAI tool calls, or None when it is not a call of an offered tool."""
    offered = {t.name: t for t in call.capture.tools}
    if not offered:
        return None
    schemas = [ToolSchema.from_json(t.name, t.parameters_json) for t in offered.values()]
    calls = parse_tool_calls(text.strip(), schemas)
    if not calls or any(c.name not in offered for c in calls):
        return None
    return [{"index": i, **openai_tool_call(c, new_call_id())} for i, c in enumerate(calls)]


def openai_tool_call(call: ToolCall, call_id: str) -> dict[str, Any]:
    """One call in OpenAI's shape, its arguments as a JSON string (both directions use it)."""
    arguments = json.dumps(dict(call.arguments), ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def finish_reason(call: Call, calls: list[dict[str, Any]] | None) -> str:
    assert call.outcome is not None
    if calls:
        return "tool_calls"
    # Triton says no more than the token count: an answer that used them all was cut short.
    limit = call.capture.params.max_tokens
    return "length" if limit and call.outcome.completion_tokens >= limit else "stop"


def usage(call: Call) -> dict[str, int]:
    assert call.outcome is not None
    prompt, completion = call.outcome.prompt_tokens, call.outcome.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def check_format(text: str, options: ChatOptions) -> None:
    """Raise UnfitAnswer when ``text`` is not the JSON (or the schema's JSON) the request asked for."""
    if not options.response_format:
        return
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UnfitAnswer(f"the model's answer is not JSON ({exc}); ask again") from exc
    schema = options.response_format.get("schema")
    if options.response_format["type"] == "json_object" and not isinstance(value, dict):
        raise UnfitAnswer("the model's answer is JSON but not an object; ask again")
    if schema is not None:
        try:
            validators.validator_for(schema)(schema).validate(value)
        except ValidationError as exc:
            raise UnfitAnswer(f"the model's answer does not match the schema: {exc.message}") from exc


def completion(call: Call, options: ChatOptions) -> dict[str, Any]:
    """The whole ``chat.completion`` of a served, non-streamed call."""
    assert call.outcome is not None
    text = call.outcome.text
    calls = tool_calls(text, call)
    if calls is None:
        check_format(text, options)
    message: dict[str, Any] = {"role": "assistant", "content": None if calls else text, "refusal": None}
    if calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    return {
        "id": completion_id(call),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": options.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason(call, calls), "logprobs": None}
        ],
        "usage": usage(call),
        "system_fingerprint": None,
    }
