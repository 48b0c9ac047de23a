"""Tool calls: the three output formats, and equivalence the way BFCL's AST checker judges it."""

from __future__ import annotations

import json

import pytest

from cumulus.graders import GradeCase, ToolCall, ToolCallGrader, ToolSchema, UngradablePair, parse_tool_calls

WEATHER = ToolSchema(
    "get_weather",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string", "default": "celsius"},
            "detail": {"type": "boolean", "description": "Hourly detail. Default is false."},
        },
        "required": ["city"],
    },
)
TOOLS = [WEATHER, ToolSchema("get_time", {"properties": {"tz": {"type": "string"}}})]


def qwen(*calls: tuple[str, dict]) -> str:  # type: ignore[type-arg]
    return "\n".join(
        f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>" for n, a in calls
    )


def test_parses_qwen_blocks_with_prose_and_a_cut_off_last_block() -> None:
    text = (
        'Let me check.\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}'
    )
    assert parse_tool_calls(text) == [
        ToolCall("get_time", {"tz": "UTC"}),
        ToolCall("get_weather", {"city": "Oslo"}),
    ]


def test_parses_bare_json_openai_wrappers_and_lists() -> None:
    assert parse_tool_calls('{"name": "f", "parameters": {"a": 1}}') == [ToolCall("f", {"a": 1})]
    wrapped = (
        '[{"type": "function", "function": {"name": "f", "arguments": "{}"}}, {"name": "g", "arguments": {}}]'
    )
    assert parse_tool_calls(wrapped) == [ToolCall("f", {}), ToolCall("g", {})]


def test_parses_python_calls_with_positional_args_named_from_the_schema() -> None:
    assert parse_tool_calls("get_weather('Oslo', 3, unit='kelvin')", TOOLS) == [
        ToolCall("get_weather", {"city": "Oslo", "days": 3, "unit": "kelvin"})
    ]
    assert parse_tool_calls("[math.hypot(x=4, y=(5, 6)), get_time(tz=zone)]") == [
        ToolCall("math.hypot", {"x": 4, "y": [5, 6]}),
        ToolCall("get_time", {"tz": "zone"}),
    ]


@pytest.mark.parametrize(
    "text",
    ["The weather is nice", '{"name": "Ada", "age": 3}', "[1, 2]", "<tool_call>not json</tool_call>", ""],
)
def test_text_that_is_not_a_tool_call(text: str) -> None:
    assert parse_tool_calls(text) is None


def grade(live: str, candidate: str):  # type: ignore[no-untyped-def]
    return ToolCallGrader().grade(GradeCase(live=live, candidate=candidate, tools=TOOLS))


@pytest.mark.parametrize(
    "candidate",
    [
        qwen(("get_weather", {"days": 3, "city": "Oslo"})),  # argument order
        '{"name": "get_weather", "arguments": {"city": "oslo", "days": 3.0}}',  # case, 3 vs 3.0
        "get_weather(city=' Oslo ', days=3)",  # Python style, spacing
        qwen(("get_weather", {"city": "Oslo", "days": 3, "unit": "celsius"})),  # the schema default
        qwen(("get_weather", {"city": "Oslo", "days": 3, "detail": False})),  # a default stated in prose
    ],
)
def test_equivalent_calls_pass(candidate: str) -> None:
    result = grade(qwen(("get_weather", {"city": "Oslo", "days": 3})), candidate)
    assert result.passed and result.score == 1.0, result.details


@pytest.mark.parametrize(
    ("candidate", "error"),
    [
        (qwen(("get_time", {"tz": "UTC"})), "function 'get_time' instead of 'get_weather'"),
        (qwen(("get_weather", {"city": "Bergen", "days": 3})), "argument 'city' is 'Bergen'"),
        (qwen(("get_weather", {"days": 3})), "argument 'city' missing on the candidate side"),
        (qwen(("get_weather", {"city": "Oslo", "days": 3, "unit": "kelvin"})), "'kelvin' is not its default"),
        (qwen(("get_weather", {"city": "Oslo", "days": "3"})), "argument 'days' is '3'"),
    ],
)
def test_different_calls_fail_and_say_why(candidate: str, error: str) -> None:
    result = grade(qwen(("get_weather", {"city": "Oslo", "days": 3})), candidate)
    assert not result.passed
    assert error in result.details["errors"][0]


def test_parallel_calls_match_in_any_order_one_to_one() -> None:
    live = qwen(("get_time", {"tz": "UTC"}), ("get_weather", {"city": "Oslo"}))
    assert grade(live, "[get_weather(city='Oslo'), get_time(tz='UTC')]").passed
    half = grade(live, qwen(("get_time", {"tz": "UTC"}), ("get_time", {"tz": "UTC"})))
    assert (half.passed, half.score) == (False, 0.5)
    extra = grade(
        live, qwen(("get_time", {"tz": "UTC"}), ("get_weather", {"city": "Oslo"}), ("get_time", {}))
    )
    assert not extra.passed and extra.details["errors"][0] == "3 calls instead of 2"


def test_a_candidate_answering_in_prose_fails_and_prose_live_is_ungradable() -> None:
    assert grade(qwen(("get_time", {})), "It is noon.").details["error"] == "candidate made no tool call"
    with pytest.raises(UngradablePair):
        grade("It is noon.", qwen(("get_time", {})))
