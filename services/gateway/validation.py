"""Request validation: everything the gateway refuses, refused before any model is called.

Each refusal is an ``InvalidArgument`` naming the field (``messages``, ``messages[2].role``,
``tools[0].parameters_json``, ``params.max_tokens``, ``metadata``, ...), which the client receives
as INVALID_ARGUMENT. Limits come from ``GatewayConfig`` (sizes) and ``TritonConfig`` (the
max_tokens cap), so an operator tunes them without touching code.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.validators import validator_for

from cumulus.config import CumulusConfig
from cumulus.errors import InvalidArgument
from cumulus.v1 import common_pb2, gateway_pb2

ROLES = frozenset({"system", "user", "assistant", "tool"})
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_SESSION_KEY = 256
_MAX_NAME = 128
_MAX_STOP_CHARS = 256
_MAX_METADATA_KEY = 128
_MAX_LABEL = 128
_MAX_COMMENT = 4096
_MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class Limits:
    """The bounds a request must respect (see GatewayConfig for each one's meaning)."""

    max_tokens_cap: int
    default_max_tokens: int
    max_messages: int
    max_prompt_chars: int
    max_tools: int
    max_stop_sequences: int
    max_metadata_entries: int
    max_metadata_bytes: int

    @classmethod
    def from_config(cls, config: CumulusConfig) -> Limits:
        gateway = config.gateway
        cap = config.triton.max_new_tokens_cap
        return cls(
            max_tokens_cap=cap,
            default_max_tokens=min(gateway.default_max_tokens, cap),
            max_messages=gateway.max_messages,
            max_prompt_chars=gateway.max_prompt_chars,
            max_tools=gateway.max_tools,
            max_stop_sequences=gateway.max_stop_sequences,
            max_metadata_entries=gateway.max_metadata_entries,
            max_metadata_bytes=gateway.max_metadata_bytes,
        )


@dataclass(frozen=True)
class Sampling:
    """Generation settings after defaults are applied: what Triton receives."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]


@dataclass(frozen=True)
class ValidRequest:
    """A GenerateRequest that passed validation, with its parsed parts."""

    sampling: Sampling
    tool_schemas: tuple[dict[str, Any], ...]
    """The ``parameters_json`` of each tool, parsed."""


def validate_generate(request: gateway_pb2.GenerateRequest, limits: Limits) -> ValidRequest:
    """Check every field of ``request``; raises InvalidArgument naming the first bad one."""
    check_identifier("request_id", request.request_id)
    check_identifier("workflow", request.workflow)
    if len(request.session_key) > _MAX_SESSION_KEY:
        raise InvalidArgument("session_key", f"longer than {_MAX_SESSION_KEY} characters")
    prompt_chars = _check_messages(request, limits)
    schemas, tool_chars = _check_tools(request, limits)
    if prompt_chars + tool_chars > limits.max_prompt_chars:
        raise InvalidArgument(
            "messages",
            f"prompt of {prompt_chars + tool_chars} characters (messages and tools) exceeds the "
            f"limit of {limits.max_prompt_chars}",
        )
    _check_metadata(request.metadata, limits)
    return ValidRequest(sampling=_sampling(request.params, limits), tool_schemas=schemas)


def validate_feedback(request: gateway_pb2.FeedbackRequest, max_correction_chars: int) -> None:
    """Check a FeedbackRequest; raises InvalidArgument naming the first bad field."""
    if not request.request_id:
        raise InvalidArgument("request_id", "required: the request_id of the response being rated")
    check_identifier("request_id", request.request_id)
    if request.HasField("score") and not 0.0 <= request.score <= 1.0:  # also refuses NaN
        raise InvalidArgument("score", f"must be in [0, 1], got {request.score}")
    if len(request.label) > _MAX_LABEL:
        raise InvalidArgument("label", f"longer than {_MAX_LABEL} characters")
    if len(request.correction) > max_correction_chars:
        raise InvalidArgument("correction", f"longer than {max_correction_chars} characters")
    if len(request.comment) > _MAX_COMMENT:
        raise InvalidArgument("comment", f"longer than {_MAX_COMMENT} characters")
    if not (request.HasField("score") or request.label or request.correction or request.comment):
        raise InvalidArgument("score", "feedback needs at least one of score, label, correction or comment")


def check_identifier(field: str, value: str) -> None:
    if value and not _ID.fullmatch(value):
        raise InvalidArgument(
            field, "must be 1-128 characters of letters, digits and . _ : - starting with a letter or digit"
        )


def _check_messages(request: gateway_pb2.GenerateRequest, limits: Limits) -> int:
    messages = request.messages
    if not messages:
        raise InvalidArgument("messages", "must not be empty", fix="send at least one user message")
    if len(messages) > limits.max_messages:
        raise InvalidArgument(
            "messages", f"{len(messages)} messages exceed the limit of {limits.max_messages}"
        )
    chars = 0
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise InvalidArgument(
                f"messages[{i}].role", f"unknown role {message.role[:32]!r}; use one of {sorted(ROLES)}"
            )
        if not message.content and message.role != "assistant":
            raise InvalidArgument(f"messages[{i}].content", f"must not be empty for role {message.role}")
        if len(message.name) > _MAX_NAME:
            raise InvalidArgument(f"messages[{i}].name", f"longer than {_MAX_NAME} characters")
        if len(message.tool_call_id) > _MAX_NAME:
            raise InvalidArgument(f"messages[{i}].tool_call_id", f"longer than {_MAX_NAME} characters")
        chars += len(message.content)
    return chars


def _check_tools(
    request: gateway_pb2.GenerateRequest, limits: Limits
) -> tuple[tuple[dict[str, Any], ...], int]:
    tools = request.tools
    if len(tools) > limits.max_tools:
        raise InvalidArgument("tools", f"{len(tools)} tools exceed the limit of {limits.max_tools}")
    schemas: list[dict[str, Any]] = []
    names: set[str] = set()
    chars = 0
    for i, tool in enumerate(tools):
        if not _TOOL_NAME.fullmatch(tool.name):
            raise InvalidArgument(f"tools[{i}].name", "must be 1-64 characters of letters, digits, _ and -")
        if tool.name in names:
            raise InvalidArgument(f"tools[{i}].name", f"duplicate tool name {tool.name!r}")
        names.add(tool.name)
        chars += len(tool.description) + len(tool.parameters_json)
        if chars > limits.max_prompt_chars:  # before parsing: never parse an oversized schema
            raise InvalidArgument(
                "tools", f"tool schemas exceed the prompt limit of {limits.max_prompt_chars}"
            )
        schemas.append(_parse_schema(f"tools[{i}].parameters_json", tool.parameters_json))
    return tuple(schemas), chars


def _parse_schema(field: str, text: str) -> dict[str, Any]:
    if not text:
        return {"type": "object", "properties": {}}
    try:
        schema = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(field, f"not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(schema, dict):
        raise InvalidArgument(field, "must be a JSON object (a JSON schema of the arguments)")
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        raise InvalidArgument(field, f"not a valid JSON schema: {exc.message[:200]}") from exc
    except RecursionError as exc:
        raise InvalidArgument(field, "JSON schema nested too deeply") from exc
    return schema


def _check_metadata(metadata: Any, limits: Limits) -> None:
    if len(metadata) > limits.max_metadata_entries:
        raise InvalidArgument(
            "metadata", f"{len(metadata)} entries exceed the limit of {limits.max_metadata_entries}"
        )
    size = 0
    for key, value in metadata.items():
        if not key or len(key) > _MAX_METADATA_KEY:
            raise InvalidArgument("metadata", f"keys must be 1-{_MAX_METADATA_KEY} characters")
        size += len(key.encode("utf-8")) + len(value.encode("utf-8"))
    if size > limits.max_metadata_bytes:
        raise InvalidArgument("metadata", f"{size} bytes exceed the limit of {limits.max_metadata_bytes}")


def _sampling(params: common_pb2.GenerationParams, limits: Limits) -> Sampling:
    max_tokens = params.max_tokens or limits.default_max_tokens
    if max_tokens > limits.max_tokens_cap:
        raise InvalidArgument(
            "params.max_tokens", f"must be between 1 and {limits.max_tokens_cap}, got {max_tokens}"
        )
    if not (math.isfinite(params.temperature) and 0.0 <= params.temperature <= _MAX_TEMPERATURE):
        raise InvalidArgument(
            "params.temperature", f"must be in [0, {_MAX_TEMPERATURE}], got {params.temperature}"
        )
    if not (math.isfinite(params.top_p) and 0.0 <= params.top_p <= 1.0):
        raise InvalidArgument("params.top_p", f"must be in [0, 1] (0 = disabled), got {params.top_p}")
    if len(params.stop) > limits.max_stop_sequences:
        raise InvalidArgument("params.stop", f"at most {limits.max_stop_sequences} stop strings")
    for stop in params.stop:
        if not stop or len(stop) > _MAX_STOP_CHARS:
            raise InvalidArgument("params.stop", f"each stop string must be 1-{_MAX_STOP_CHARS} characters")
    return Sampling(
        max_tokens=max_tokens,
        temperature=float(params.temperature),
        top_p=float(params.top_p) or 1.0,
        stop=tuple(params.stop),
    )
