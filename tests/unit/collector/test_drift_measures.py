"""Drift signals against a training dataset: each rule fires on its own kind of change, at the
severity its thresholds give, and stays quiet on traffic like the training data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cumulus.config import DriftConfig
from services.collector.drift_measures import Profile, Served, WrongShare, measure, profile_of

TOOLS = [{"name": "get_weather", "parameters": {"type": "object"}}]
SYSTEM = "You are a weather assistant. Today is 2026-12-07."


def line(
    question: str, answer: str, system: str = SYSTEM, tools: list[dict[str, Any]] = TOOLS
) -> dict[str, Any]:
    """One exported dataset line (tools in the OpenAI function format, as export writes them)."""
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
        "tools": [{"type": "function", "function": t} for t in tools],
    }


def call(city: str) -> str:
    return f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}</tool_call>'


def profile() -> Profile:
    train = [line(f"What is the weather in city number {i}?", call(f"c{i}")) for i in range(90)]
    holdout = [line(f"Weather for town {i}, please?", call(f"t{i}")) for i in range(10)]
    return profile_of("ds-1", train, holdout)


def served(question: str, answer: str | None = None, system: str = SYSTEM, tools: Any = TOOLS) -> Served:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    found = Served.from_row(json.dumps(messages), json.dumps(tools), answer)
    assert found is not None
    return found


NO_FEEDBACK = (WrongShare(0, 0), WrongShare(0, 0))
CFG = DriftConfig(min_requests=30, min_feedback=20)


def severities(window: list[Served], feedback: tuple[WrongShare, WrongShare] = NO_FEEDBACK) -> dict[str, int]:
    return {s.signal: s.severity for s in measure(profile(), window, feedback, CFG)}


def test_the_profile_reads_tools_system_prompts_lengths_and_shapes() -> None:
    p = profile()
    assert p.tools == {"get_weather"} and p.dominant_shape == ("tool_call", 1.0)
    assert len(p.systems) == 1  # the date's digits are folded: one template
    assert p.holdout_new_tools == 0.0 and p.holdout_new_system == 0.0
    assert 30 < p.median_chars < 40


def test_traffic_like_the_training_data_raises_nothing() -> None:
    window = [served(f"What is the weather in city number {i}?", call(f"x{i}")) for i in range(100, 160)]
    # Another day's date in the system prompt is the same template.
    window += [served("What is the weather in Oslo?", call("Oslo"), system=SYSTEM.replace("07", "08"))] * 5
    assert severities(window) == {
        "new_tools": 0,
        "template": 0,
        "prompt_length": 0,
        "output_shape": 0,
    }


def test_a_new_tool_offered_to_a_share_of_requests() -> None:
    booking = [*TOOLS, {"name": "book_flight", "parameters": {}}]
    window = [served(f"What is the weather in city {i}?") for i in range(40)]
    window += [served(f"Book me a flight to city {i}", tools=booking) for i in range(10)]  # 20%
    [new_tools] = [s for s in measure(profile(), window, NO_FEEDBACK, CFG) if s.signal == "new_tools"]
    assert new_tools.severity == 2 and "book_flight" in new_tools.detail  # warning: 0.1 <= 0.2 < 0.3
    assert new_tools.evidence["share"] == 0.2


def test_a_reworded_system_prompt() -> None:
    window = [served(f"What is the weather in city {i}?", system="You book flights.") for i in range(40)]
    assert severities(window)["template"] == 3


def test_prompts_much_longer_than_trained_on() -> None:
    window = [
        served("What is the weather " + "and the forecast for the week " * 3 + str(i)) for i in range(40)
    ]
    assert severities(window)["prompt_length"] == 2  # more than twice as long: a warning, never critical


def test_the_adapter_answers_in_another_shape() -> None:
    window = [
        served(f"weather in city {i}?", "It is sunny and warm today, enjoy it!\nBye.") for i in range(40)
    ]
    assert severities(window)["output_shape"] == 3
    # Requests the adapter did not answer (the live audit, errors) are not its output.
    unanswered = [served(f"weather in city {i}?") for i in range(40)]
    assert "output_shape" not in severities(unanswered)


def test_falling_feedback_against_live_before_the_promotion() -> None:
    assert severities([], (WrongShare(40, 12), WrongShare(40, 2)))["feedback"] == 2  # 30% vs 5%: +0.25
    assert severities([], (WrongShare(40, 3), WrongShare(40, 2)))["feedback"] == 0
    # Too little feedback on either side to compare: not measured at all.
    assert "feedback" not in severities([], (WrongShare(10, 9), WrongShare(40, 2)))


def test_a_window_too_small_measures_nothing() -> None:
    window = [served("Book a flight", "no", system="Other.", tools=[]) for _ in range(CFG.min_requests - 1)]
    assert severities(window) == {}


def test_a_workflow_whose_system_prompt_always_varies_is_not_drift() -> None:
    train = [line(f"q{i}", "ok", system=f"Customer: {name}") for i, name in enumerate(["ann", "bob"] * 45)]
    holdout = [line(f"q{i}", "ok", system=f"Customer: {name}") for i, name in enumerate(["cy", "di"] * 5)]
    varied = profile_of("ds-2", train, holdout)
    assert varied.holdout_new_system == 1.0
    window = [served(f"q{i}", system=f"Customer: eve{chr(97 + i % 26)}", tools=[]) for i in range(40)]
    [template] = [s for s in measure(varied, window, NO_FEEDBACK, CFG) if s.signal == "template"]
    assert template.severity == 0


@pytest.mark.parametrize("raw", ["not json", '{"role": 1}'])
def test_a_malformed_row_is_skipped(raw: str) -> None:
    found = Served.from_row(raw, "", None)
    assert found is None or found.prompt.chars == 0
