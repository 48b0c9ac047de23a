"""Fixtures for the engine and inference unit tests: the real tiny-llama engine and a scripted fake model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from cumulus.engine.backend import GenerationEngine
from cumulus.models import TINY_LLAMA, ensure_model, load_causal_lm

# The per-machine model cache (converted once, shared with the integration tests).
SHARED_MODELS = Path(__file__).resolve().parents[2] / ".cumulus" / "models"


@pytest.fixture(scope="session")
def tiny_lm() -> tuple[Any, Any]:
    """tiny-llama in fp32: batched and single runs agree to the last bit of the argmax."""
    return load_causal_lm(ensure_model(TINY_LLAMA, SHARED_MODELS), "float32")


@pytest.fixture
def tiny_engine(tiny_lm: tuple[Any, Any]) -> GenerationEngine:
    return GenerationEngine(*tiny_lm)


@dataclass
class _ScriptCache:
    rows: list[int]
    steps: int = 0

    def batch_select_indices(self, index: torch.Tensor) -> None:
        self.rows = [self.rows[i] for i in index.tolist()]


@dataclass
class ScriptedModel:
    """Stands in for a causal LM: each prompt is answered with a fixed list of token ids, then EOS.

    Lets tests pin exact token sequences (split UTF-8 characters, stop strings across tokens).
    """

    tokenizer: Any
    scripts: dict[str, list[int]]
    eos_id: int = 2
    config: Any = field(init=False)
    generation_config: Any = field(init=False)

    def __post_init__(self) -> None:
        self.config = SimpleNamespace(eos_token_id=self.eos_id, max_position_embeddings=64)
        self.generation_config = SimpleNamespace(eos_token_id=None)
        self._prompts = list(self.scripts)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
        cache = kwargs.get("past_key_values")
        if not isinstance(cache, _ScriptCache):  # prefill (an empty cache): recognise each row's prompt
            texts = [
                self.tokenizer.decode(ids[mask.bool()])
                for ids, mask in zip(input_ids, attention_mask, strict=True)
            ]
            cache = _ScriptCache([self._prompts.index(t) for t in texts])
        else:
            cache.steps += 1
        logits = torch.zeros(len(cache.rows), 1, len(self.tokenizer))
        for b, row in enumerate(cache.rows):
            script = self.scripts[self._prompts[row]]
            logits[b, 0, script[cache.steps] if cache.steps < len(script) else self.eos_id] = 1.0
        return SimpleNamespace(logits=logits, past_key_values=cache)


@pytest.fixture
def scripted_engine(tiny_lm: tuple[Any, Any]) -> Any:
    """Factory: ``scripted_engine({prompt: completion_token_ids})`` -> GenerationEngine."""
    tokenizer = tiny_lm[1]

    def build(scripts: dict[str, list[int]]) -> GenerationEngine:
        return GenerationEngine(ScriptedModel(tokenizer, scripts), tokenizer)

    return build
