"""Gemma 3 270M, the ladder's second student: its tokenizer, trained through the real job, served by
the engine with the adapter from the artifact store (the path Triton's inference host takes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cumulus.engine.adapter_cache import AdapterCache
from cumulus.engine.backend import GenerationEngine, GenerationRequest
from cumulus.engine.multilora import MultiLora
from cumulus.lora import lora_task_id
from cumulus.lora.registry import AdapterRegistry
from cumulus.models import GEMMA3, ensure_model, load_causal_lm
from cumulus.models.params import model_parameters
from cumulus.prompts import render_prompt
from services.trainer.job import RESULT, main
from tests.unit.trainer.conftest import SHARED_MODELS, TEAMS, ticket_records

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def gemma() -> tuple[Any, Any]:
    return load_causal_lm(ensure_model(GEMMA3, SHARED_MODELS), "float32")


def test_tokenizer_keeps_gemma_words_whole_and_ends_answers_with_the_turn_marker(
    gemma: tuple[Any, Any],
) -> None:
    _, tokenizer = gemma
    # Google's tokenizer: <bos> The ▁capital ▁of ▁France ▁is (a per-character split is 25 ids).
    assert tokenizer("The capital of France is").input_ids == [2, 818, 5279, 529, 7001, 563]
    text = "Ticket 7: I can't log in\n\n\tnaïve 東京 🙂"
    assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == text
    assert tokenizer.eos_token == "<end_of_turn>"
    chat = [{"role": "system", "content": "Route it."}, {"role": "user", "content": "Hi"}]
    prompt = render_prompt(tokenizer, chat)
    assert prompt.text == "<start_of_turn>user\nRoute it.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert tokenizer(prompt.text).input_ids[:3] == [2, 105, 2364]  # one <bos>, markers are single ids


def test_tied_embedding_counts_once_as_the_output_projection() -> None:
    # 262144 x 640 embedding (also the lm_head) + 18 layers: Google's 268M, not twice the table.
    assert 260e6 < model_parameters(GEMMA3, SHARED_MODELS) < 275e6


def test_an_adapter_trained_on_gemma_is_served_from_the_registry(
    gemma: tuple[Any, Any],
    write_recipe: Callable[..., Path],
    job_spec: Callable[..., Path],
    tmp_path: Path,
) -> None:
    recipe = write_recipe(
        lora={"rank": 8, "alpha": 16},
        optim={"lr": 3.0e-3, "warmup_steps": 2},
        train={"batch_size": 4, "epochs": 6, "max_steps": 24, "eval_every": 0, "checkpoint_every": 0},
    )
    spec_path = job_spec(recipe, "ad-gemma")
    spec = json.loads(spec_path.read_text())
    spec["base_model"] = GEMMA3
    spec_path.write_text(json.dumps(spec))
    assert main([str(spec_path)]) == 0
    result = json.loads((spec_path.parent / RESULT).read_text())
    assert result["status"] in ("READY", "REJECTED"), result

    model, tokenizer = gemma
    cache = AdapterCache(
        MultiLora(model, slots=3),
        model_id=GEMMA3,
        registry=AdapterRegistry(tmp_path / "artifacts"),
        max_adapters=2,
    )
    engine = GenerationEngine(model, tokenizer, adapters=cache)
    adapter = cache.resolve(lora_task_id("ad-gemma"), None, None)
    holdout = ticket_records(48)[40:]
    prompts = [render_prompt(tokenizer, r["messages"][:2]).text for r in holdout]
    tuned = engine.generate([GenerationRequest(p, 8, adapter=adapter) for p in prompts])
    base = engine.generate([GenerationRequest(p, 8) for p in prompts[:2]])
    # A few steps teach the pretrained model the format: a team name, then the turn marker.
    assert all(c.finish_reason == "stop" for c in tuned), tuned
    named = [c.text.strip() for c in tuned]
    assert sum(n in TEAMS for n in named) >= len(holdout) - 1, named
    right = sum(n == r["messages"][2]["content"] for n, r in zip(named, holdout, strict=True))
    assert right >= len(holdout) // 2, named
    assert [c.text for c in base] != [c.text for c in tuned[:2]]  # the base row runs without it
