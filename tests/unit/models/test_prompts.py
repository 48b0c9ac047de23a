"""The prompt renderer (cumulus.prompts) on the real chat templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cumulus.errors import ArtifactError, InvalidArgument
from cumulus.models import QWEN_CODER, TINY_LLAMA, ensure_model, load_causal_lm
from cumulus.prompts import RENDERER, PromptSpec, render_prompt

SHARED_MODELS = Path(__file__).resolve().parents[3] / ".cumulus" / "models"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
MESSAGES = [
    {"role": "system", "content": "You answer weather questions."},
    {"role": "user", "content": "Weather in Paris?"},
]
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ],
}


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    # tiny-llama carries SmolLM2's tokenizer and chat template, without the slow conversion.
    return load_causal_lm(ensure_model(TINY_LLAMA, SHARED_MODELS), "float32")[1]


def test_smollm2_gets_tool_schemas_in_the_system_message(smollm2_tokenizer: Any) -> None:
    rendered = render_prompt(smollm2_tokenizer, MESSAGES, TOOLS)
    system = rendered.text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nYou answer weather questions.\n\n# Tools")
    assert '"name": "get_weather"' in system and "<tool_call>" in system
    assert rendered.text.endswith("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n")
    assert rendered.pruned == []


def test_smollm2_without_a_system_message_gets_one_for_the_tools(smollm2_tokenizer: Any) -> None:
    text = render_prompt(smollm2_tokenizer, MESSAGES[1:], TOOLS).text
    assert text.startswith("<|im_start|>system\n# Tools")
    assert "SmolLM" not in text  # the template's default system prompt is replaced, not stacked


def test_smollm2_past_tool_calls_become_text(smollm2_tokenizer: Any) -> None:
    text = render_prompt(smollm2_tokenizer, [*MESSAGES, CALL], TOOLS).text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text


def test_pruning_records_what_was_left_out(smollm2_tokenizer: Any) -> None:
    rendered = render_prompt(smollm2_tokenizer, MESSAGES, TOOLS, prune=("system", "tools"))
    assert rendered.pruned == ["system", "tools"]
    assert "weather questions" not in rendered.text and "get_weather" not in rendered.text
    assert render_prompt(smollm2_tokenizer, MESSAGES[1:], None, prune=("system", "tools")).pruned == []
    with pytest.raises(InvalidArgument, match="prune"):
        render_prompt(smollm2_tokenizer, MESSAGES, prune=("examples",))


def test_prompt_spec_reads_the_manifest_field_the_trainer_writes() -> None:
    assert PromptSpec.from_manifest({"renderer": RENDERER, "prune": ["system", "tools"]}).prune == (
        "system",
        "tools",
    )
    assert PromptSpec.from_manifest({"renderer": RENDERER, "prune": []}) == PromptSpec()
    assert PromptSpec.from_manifest(None) == PromptSpec()  # an adapter trained before the field existed


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ({"renderer": RENDERER, "prune": ["examples"]}, "unknown parts"),
        ({"renderer": "other.render", "prune": []}, "renderer 'other.render'"),
        ({"prune": "system"}, "list of names"),
        (["system"], "must be an object"),
    ],
)
def test_prompt_spec_refuses_what_the_renderer_cannot_reproduce(field: object, problem: str) -> None:
    with pytest.raises(ArtifactError, match=problem):
        PromptSpec.from_manifest(field)


@pytest.mark.models
def test_qwen_uses_its_own_template_for_tools() -> None:
    rendered = render_prompt(QWEN_CODER, [*MESSAGES, CALL], TOOLS, models_dir=SHARED_MODELS)
    assert rendered.text.startswith("<|im_start|>system\nYou answer weather questions.\n\n# Tools")
    assert "<tools>\n" + '{"type": "function", "function": {"name": "get_weather"' in rendered.text
    # arguments were parsed, so Qwen's template prints the object rather than a quoted string
    assert '"arguments": {"city": "Paris"}' in rendered.text
    assert rendered.text.endswith("<|im_start|>assistant\n")
