"""Training examples: the gateway's prompt, completion-only labels, packing that keeps examples apart."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import torch

from cumulus.models import TINY_LLAMA, ensure_model
from cumulus.prompts import render_prompt
from services.trainer import data
from services.trainer.recipe import LoraRecipe
from services.trainer.recipe_config import RecipeConfig
from tests.unit.trainer.conftest import SHARED_MODELS, ticket_records

TOOLS = [{"type": "function", "function": {"name": "route", "parameters": {"properties": {"team": {}}}}}]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> LoraRecipe:
    config = RecipeConfig(
        precision="fp32", device="cpu", train={"eval_every": 0, "early_stopping_patience": 0}
    )
    recipe = LoraRecipe(
        config,
        model_path=ensure_model(TINY_LLAMA, SHARED_MODELS),
        train_records=ticket_records(6),
        holdout_records=[],
        checkpoint_dir=tmp_path_factory.mktemp("checkpoint"),
    )
    recipe.setup()
    return recipe


def test_prompt_is_rendered_like_the_gateway_and_only_the_answer_is_trained(recipe: LoraRecipe) -> None:
    tokenizer = recipe.tokenizer
    record: dict[str, Any] = {**ticket_records(1)[0], "tools": TOOLS}
    (example,) = data.tokenize([record], tokenizer, max_seq_len=512, completion_only=True)
    prompt = render_prompt(tokenizer, record["messages"][:-1], TOOLS).text
    prompt_ids = tokenizer(prompt).input_ids  # exactly how the backend tokenizes text_input
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert set(example.labels[: len(prompt_ids)]) == {data.IGNORE}
    answer = example.labels[len(prompt_ids) :]
    assert tokenizer.decode(answer) == record["messages"][-1]["content"] + tokenizer.eos_token


def test_full_loss_trains_on_the_prompt_but_never_across_examples(recipe: LoraRecipe) -> None:
    (example,) = data.tokenize(ticket_records(1), recipe.tokenizer, max_seq_len=512, completion_only=False)
    assert example.labels[0] == data.IGNORE and example.labels[1:] == example.input_ids[1:]


def test_too_long_examples_are_skipped_not_cut(recipe: LoraRecipe) -> None:
    counts: Counter[str] = Counter()
    assert (
        data.tokenize(ticket_records(3), recipe.tokenizer, max_seq_len=8, completion_only=True, counts=counts)
        == []
    )
    assert counts["too_long"] == 3


def test_a_packed_row_has_the_loss_of_its_examples_alone(recipe: LoraRecipe) -> None:
    examples = data.tokenize(ticket_records(3), recipe.tokenizer, max_seq_len=512, completion_only=True)
    (row,) = data.pack(examples, max_seq_len=512, seed=0)
    assert len(row) == 3
    batch = data.collate([row], pad_id=0)
    starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0]
    assert starts[:3] == [0, len(row[0].input_ids), len(row[0].input_ids) + len(row[1].input_ids)]
    recipe.model.eval()
    with torch.no_grad():
        packed, packed_tokens = recipe._loss_sum([row])
        alone = [recipe._loss_sum([[example]]) for example in row]
    assert packed_tokens == sum(n for _, n in alone) == data.trained_tokens([row])
    assert float(packed) == pytest.approx(sum(float(loss) for loss, _ in alone), rel=1e-5)


def test_packing_fills_rows_first_fit() -> None:
    def example(size: int) -> data.Example:
        return data.Example([1] * size, [data.IGNORE] * size)

    examples = [example(60), example(50), example(40), example(30)]
    rows = data.pack(examples, max_seq_len=100, seed=0)
    assert len(rows) == 2 and sorted(len(e.input_ids) for row in rows for e in row) == [30, 40, 50, 60]
    assert all(sum(len(e.input_ids) for e in row) <= 100 for row in rows)
    assert data.pack(examples, max_seq_len=100, seed=0) == rows  # the same seed, the same rows


def test_an_adapter_trained_without_tool_schemas_records_the_tools_it_saw(tmp_path: Any) -> None:
    from services.trainer.job import prompt_spec

    records = [
        {"messages": [], "tools": TOOLS},
        {"messages": [], "tools": [{"type": "function", "function": {"name": "escalate"}}]},
        {"messages": []},
    ]
    assert data.tool_names(records) == ["escalate", "route"]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    spec = prompt_spec(("system", "tools"), tmp_path)
    assert spec["prune"] == ["system", "tools"] and spec["tool_names"] == ["escalate", "route"]
    assert "tool_names" not in prompt_spec(("system",), tmp_path)  # tools stay in its prompts
