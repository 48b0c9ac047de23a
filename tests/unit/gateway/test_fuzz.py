"""Fuzzing every request field: the gateway never crashes and answers only OK or INVALID_ARGUMENT."""

import json

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cumulus.kafka import topics
from cumulus.v1 import common_pb2, gateway_pb2
from tests.unit.gateway.conftest import Harness

short_text = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | short_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(short_text, children, max_size=4),
    max_leaves=12,
)
schemas = st.one_of(
    short_text,
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["object", "string", "objekt", 3])},
        optional={"properties": json_values, "required": json_values},
    ).map(json.dumps),
)
ROLES = ["system", "user", "assistant", "tool"]
good_text = st.text(min_size=1, max_size=200)
good_ids = st.just("") | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
good_schemas = st.fixed_dictionaries(
    {"type": st.just("object")},
    optional={"properties": st.dictionaries(st.text(max_size=10), st.just({"type": "string"}), max_size=3)},
).map(json.dumps)

# Each field as a well-formed value and as anything at all.
FIELDS = {
    "request_id": (good_ids, st.text(max_size=140)),
    "workflow": (good_ids, st.text(max_size=140)),
    "session_key": (st.text(max_size=40), st.text(max_size=300)),
    "messages": (
        st.lists(
            st.builds(common_pb2.ChatMessage, role=st.sampled_from(ROLES), content=good_text),
            min_size=1,
            max_size=4,
        ),
        st.lists(
            st.builds(
                common_pb2.ChatMessage,
                role=st.sampled_from([*ROLES, "", "robot"]) | short_text,
                content=st.text(max_size=200),
                name=st.text(max_size=140),
                tool_call_id=st.text(max_size=140),
            ),
            max_size=6,
        ),
    ),
    "tools": (
        st.lists(
            st.builds(
                common_pb2.Tool,
                name=st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
                parameters_json=good_schemas,
            ),
            max_size=3,
            unique_by=lambda t: t.name,
        ),
        st.lists(
            st.builds(
                common_pb2.Tool,
                name=st.sampled_from(["get_weather", "bad name", ""]) | short_text,
                description=short_text,
                parameters_json=schemas,
            ),
            max_size=4,
        ),
    ),
    "params": (
        st.builds(
            common_pb2.GenerationParams,
            max_tokens=st.integers(0, 512),
            temperature=st.floats(0, 2, width=32),
            top_p=st.floats(0, 1, width=32),
            stop=st.lists(st.text(min_size=1, max_size=20), max_size=3),
        ),
        st.builds(
            common_pb2.GenerationParams,
            max_tokens=st.integers(0, 2**32 - 1),
            temperature=st.floats(width=32),
            top_p=st.floats(width=32),
            stop=st.lists(st.text(max_size=300), max_size=10),
        ),
    ),
    "metadata": (
        st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=5),
        st.dictionaries(st.text(max_size=140), st.text(max_size=300), max_size=40),
    ),
}


@st.composite
def requests(draw: st.DrawFn) -> gateway_pb2.GenerateRequest:
    """Well-formed requests, with none, one or every field replaced by an arbitrary value."""
    wild = draw(st.sampled_from(["none", "one", "all"]))
    chosen = draw(st.sampled_from(sorted(FIELDS))) if wild == "one" else None
    fields = {
        name: draw(wild_value if wild == "all" or name == chosen else good)
        for name, (good, wild_value) in FIELDS.items()
    }
    return gateway_pb2.GenerateRequest(**fields)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_any_request_is_answered_ok_or_invalid_argument(
    gateway: Harness, request: gateway_pb2.GenerateRequest
) -> None:
    before = len(gateway.sink.of(topics.INFERENCE))
    try:
        reply = await gateway.stub.Generate(request, metadata=gateway.auth())
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        field = (exc.details() or "").split(":")[0]
        assert field.split("[")[0].split(".")[0] in gateway_pb2.GenerateRequest.DESCRIPTOR.fields_by_name
        assert len(gateway.sink.of(topics.INFERENCE)) == before  # refused: nothing captured
    else:
        assert reply.text and reply.route.target.model == "live"
        assert len(gateway.sink.of(topics.INFERENCE)) == before + 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | requests().map(lambda r: r.SerializeToString()[:-1] + b"\xff"))
async def test_bytes_that_are_no_request_are_invalid_argument_never_internal(
    gateway: Harness, raw: bytes
) -> None:
    generate = gateway.channel.unary_unary(
        "/cumulus.v1.Gateway/Generate",
        request_serializer=lambda body: body,
        response_deserializer=gateway_pb2.GenerateResponse.FromString,
    )
    try:
        await generate(raw, metadata=gateway.auth())
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (exc.code(), exc.details())
