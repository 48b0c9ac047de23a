"""Every refusal names its field; the gateway answers INVALID_ARGUMENT before calling any model."""

import json

import grpc
import pytest

from cumulus.config import CumulusConfig
from cumulus.errors import InvalidArgument
from cumulus.v1 import common_pb2, gateway_pb2
from services.gateway.validation import Limits, validate_feedback, validate_generate
from tests.unit.gateway.conftest import Harness, ask

LIMITS = Limits.from_config(CumulusConfig())
USER = common_pb2.ChatMessage(role="user", content="hi")


def tool(name: str = "get_weather", parameters_json: str = '{"type": "object"}') -> common_pb2.Tool:
    return common_pb2.Tool(name=name, description="d", parameters_json=parameters_json)


def request(**fields: object) -> gateway_pb2.GenerateRequest:
    fields.setdefault("messages", [USER])
    return gateway_pb2.GenerateRequest(**fields)  # type: ignore[arg-type]


BAD = {
    "empty messages": (request(messages=[]), "messages"),
    "too many messages": (request(messages=[USER] * (LIMITS.max_messages + 1)), "messages"),
    "unknown role": (
        request(messages=[common_pb2.ChatMessage(role="robot", content="x")]),
        "messages[0].role",
    ),
    "empty role": (request(messages=[USER, common_pb2.ChatMessage(content="x")]), "messages[1].role"),
    "empty user content": (request(messages=[common_pb2.ChatMessage(role="user")]), "messages[0].content"),
    "prompt too large": (
        request(messages=[common_pb2.ChatMessage(role="user", content="x" * (LIMITS.max_prompt_chars + 1))]),
        "messages",
    ),
    "max_tokens over cap": (
        request(params=common_pb2.GenerationParams(max_tokens=LIMITS.max_tokens_cap + 1)),
        "params.max_tokens",
    ),
    "negative temperature": (
        request(params=common_pb2.GenerationParams(temperature=-0.1)),
        "params.temperature",
    ),
    "nan temperature": (
        request(params=common_pb2.GenerationParams(temperature=float("nan"))),
        "params.temperature",
    ),
    "top_p over 1": (request(params=common_pb2.GenerationParams(top_p=1.5)), "params.top_p"),
    "empty stop": (request(params=common_pb2.GenerationParams(stop=[""])), "params.stop"),
    "too many stops": (request(params=common_pb2.GenerationParams(stop=["x"] * 9)), "params.stop"),
    "tool schema not json": (request(tools=[tool(parameters_json="{nope")]), "tools[0].parameters_json"),
    "tool schema not an object": (
        request(tools=[tool(parameters_json="[1, 2]")]),
        "tools[0].parameters_json",
    ),
    "tool schema invalid": (
        request(tools=[tool(parameters_json=json.dumps({"type": "objekt"}))]),
        "tools[0].parameters_json",
    ),
    "tool required not a list": (
        request(tools=[tool(parameters_json=json.dumps({"type": "object", "required": "city"}))]),
        "tools[0].parameters_json",
    ),
    "tool name invalid": (request(tools=[tool(name="get weather")]), "tools[0].name"),
    "tool name duplicate": (request(tools=[tool(), tool()]), "tools[1].name"),
    "too many tools": (request(tools=[tool(name=f"t{i}") for i in range(LIMITS.max_tools + 1)]), "tools"),
    "too much metadata": (
        request(metadata={f"k{i}": "v" for i in range(LIMITS.max_metadata_entries + 1)}),
        "metadata",
    ),
    "oversized metadata": (request(metadata={"k": "v" * LIMITS.max_metadata_bytes}), "metadata"),
    "empty metadata key": (request(metadata={"": "v"}), "metadata"),
    "bad request_id": (request(request_id="has space"), "request_id"),
    "bad workflow": (request(workflow="-starts-with-dash"), "workflow"),
    "long session key": (request(session_key="s" * 257), "session_key"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_refusal_names_the_field(case: str) -> None:
    bad, field = BAD[case]
    with pytest.raises(InvalidArgument) as err:
        validate_generate(bad, LIMITS)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_defaults_and_accepted_values() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    valid = validate_generate(
        request(
            tools=[tool(parameters_json=json.dumps(schema)), tool(name="noargs", parameters_json="")],
            params=common_pb2.GenerationParams(temperature=0.7, stop=["END"]),
            metadata={"team": "support"},
            request_id="550e8400-e29b-41d4-a716-446655440000",
            workflow="support.tickets_v2",
        ),
        LIMITS,
    )
    assert valid.sampling.max_tokens == LIMITS.default_max_tokens
    assert valid.sampling.top_p == 1.0 and valid.sampling.stop == ("END",)
    assert valid.tool_schemas[0] == schema and valid.tool_schemas[1]["type"] == "object"


def test_draft7_schema_is_checked_with_its_own_dialect() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": 3,
    }
    with pytest.raises(InvalidArgument, match=r"tools\[0\].parameters_json"):
        validate_generate(request(tools=[tool(parameters_json=json.dumps(schema))]), LIMITS)


@pytest.mark.parametrize(
    ("feedback", "field"),
    [
        (gateway_pb2.FeedbackRequest(label="x"), "request_id"),
        (gateway_pb2.FeedbackRequest(request_id="r", score=1.5), "score"),
        (gateway_pb2.FeedbackRequest(request_id="r", score=float("nan")), "score"),
        (gateway_pb2.FeedbackRequest(request_id="r"), "score"),
        (gateway_pb2.FeedbackRequest(request_id="r", label="l" * 129), "label"),
        (gateway_pb2.FeedbackRequest(request_id="r", correction="c" * 11), "correction"),
    ],
)
def test_feedback_refusals(feedback: gateway_pb2.FeedbackRequest, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_feedback(feedback, max_correction_chars=10)
    assert err.value.field == field


async def test_empty_messages_is_invalid_argument_naming_messages(gateway: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.Generate(gateway_pb2.GenerateRequest(), metadata=gateway.auth())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("messages: ")
    assert not gateway.triton.requests and not gateway.sink.events


async def test_stream_validation_fails_the_stream(gateway: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in gateway.stub.GenerateStream(
            ask(params=common_pb2.GenerationParams(top_p=2)), metadata=gateway.auth()
        ):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "params.top_p" in (
        err.value.details() or ""
    )
