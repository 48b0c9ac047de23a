"""Shared-prefix prefill on tiny-llama (fp32): the same tokens as prefilling every prompt whole."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from cumulus.engine.adapter_cache import AdapterCache
from cumulus.engine.backend import GenerationEngine, GenerationRequest
from cumulus.engine.multilora import MultiLora
from cumulus.engine.prefix import BLOCK, PrefixCache
from cumulus.models import TINY_LLAMA
from tests.unit.engine.test_multilora import export, peft_adapter

SYSTEM = (
    "<|im_start|>system\nYou route customer messages. Answer with one label from this list: billing, "
    "shipping, returns, warranty, account, fraud, other. Never explain the label.<|im_end|>\n"
)
QUESTIONS = [
    "My parcel has not arrived after two weeks",
    "I was charged twice",
    "Can I send back shoes that do not fit, and how long do I have to do it?",
    "Someone logged into my account",
]


def _prompt(question: str, system: str = SYSTEM) -> str:
    return f"{system}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def _texts(engine: GenerationEngine, prompts: list[str], max_tokens: int = 12) -> list[str]:
    return [c.text for c in engine.generate([GenerationRequest(p, max_tokens=max_tokens) for p in prompts])]


@pytest.fixture
def whole(tiny_lm: tuple[Any, Any]) -> GenerationEngine:
    """The reference: every prompt computed whole (a cache with no room keeps nothing)."""
    return GenerationEngine(*tiny_lm, prefix_cache_bytes=0)


def _prompt_ids(tokens: int, start: int = 0) -> list[int]:
    return list(range(start, start + tokens))


def test_blocks_are_matched_whole_and_leave_a_token_to_compute() -> None:
    cache = PrefixCache(min_tokens=BLOCK)
    prompt = _prompt_ids(3 * BLOCK)
    assert cache.match(prompt, None).tokens == 0
    kv = torch.randn(2, 2, 1, len(prompt), 4)
    cache.store(prompt, None, kv, cached=0)
    assert cache.cached_blocks == 3
    again = cache.match(prompt, None)  # the last block holds the last token: it is computed again
    assert again.tokens == 2 * BLOCK and again.kv is not None
    torch.testing.assert_close(again.kv, kv[:, :, :, : 2 * BLOCK])
    longer = cache.match([*prompt, 7, 8], None)
    assert longer.tokens == 3 * BLOCK
    diverging = [*prompt[:BLOCK], 999, *prompt[BLOCK + 1 :]]
    assert cache.match(diverging, None).tokens == BLOCK
    assert cache.match(prompt, object()).tokens == 0  # another adapter's blocks are not its own


def test_a_hash_collision_never_serves_another_prompts_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cumulus.engine.prefix.hash", lambda value: 42, raising=False)
    cache = PrefixCache(min_tokens=BLOCK)
    cache.store(_prompt_ids(2 * BLOCK), None, torch.randn(1, 2, 1, 2 * BLOCK, 4), cached=0)
    assert cache.match(_prompt_ids(2 * BLOCK, start=500), None).tokens == 0


def test_the_budget_evicts_leaves_before_the_blocks_they_extend() -> None:
    kv_bytes = torch.randn(1, 2, 1, BLOCK, 4).nbytes
    cache = PrefixCache(max_bytes=4 * kv_bytes, min_tokens=BLOCK)
    shared = _prompt_ids(2 * BLOCK)
    for n in range(4):  # four prompts: the same two blocks, then a block of their own
        prompt = shared + _prompt_ids(BLOCK, start=1000 * (n + 1))
        cache.store(prompt, None, torch.randn(1, 2, 1, len(prompt), 4), cached=0)
    assert cache.cached_blocks == 4
    assert cache.match([*shared, 1], None).tokens == 2 * BLOCK  # the shared start survived


def test_cached_prefixes_give_the_same_tokens_as_whole_prompts(
    tiny_engine: GenerationEngine, whole: GenerationEngine
) -> None:
    first, second = [_prompt(q) for q in QUESTIONS[:2]], [_prompt(q) for q in QUESTIONS[2:]]
    assert _texts(tiny_engine, first) == _texts(whole, first)
    assert tiny_engine.prefixes.hit_tokens == 0  # a first batch computes everything
    assert _texts(tiny_engine, second) == _texts(whole, second)
    alone = [_prompt(QUESTIONS[0])]  # one request alone reuses earlier batches' blocks too
    assert _texts(tiny_engine, alone) == _texts(whole, alone)
    assert tiny_engine.prefixes.hit_tokens > 0 and whole.prefixes.hit_tokens == 0


def test_a_different_system_prompt_is_not_served_a_stale_prefix(
    tiny_engine: GenerationEngine, whole: GenerationEngine
) -> None:
    other = SYSTEM.replace("customer messages", "support tickets for a bank")
    _texts(tiny_engine, [_prompt(q) for q in QUESTIONS[:2]])
    mixed = [_prompt(QUESTIONS[2], other), _prompt(QUESTIONS[3]), _prompt(QUESTIONS[1], other)]
    assert _texts(tiny_engine, mixed) == _texts(whole, mixed)


def test_streamed_chunks_and_token_counts_are_unchanged(
    tiny_engine: GenerationEngine, whole: GenerationEngine
) -> None:
    requests = [GenerationRequest(_prompt(q), max_tokens=6 + i) for i, q in enumerate(QUESTIONS)]

    def chunks(engine: GenerationEngine) -> list[tuple[int, str, int, int]]:
        return [
            (c.index, c.text, c.prompt_tokens, c.completion_tokens)
            for s in engine.stream(requests)
            for c in s
        ]

    assert chunks(tiny_engine) == chunks(whole)
    assert chunks(tiny_engine) == chunks(whole)  # the second time from the cache


def test_prefixes_are_kept_per_adapter(tiny_lm: tuple[Any, Any]) -> None:
    """An adapter's prefix KV differs from the base's: rows get their own adapter's blocks, mixed or not."""
    model, tokenizer = copy.deepcopy(tiny_lm[0]), tiny_lm[1]
    cache = AdapterCache(MultiLora(model, slots=3), model_id=TINY_LLAMA, registry=None, max_adapters=4)
    engine = GenerationEngine(model, tokenizer, adapters=cache)
    reference = GenerationEngine(model, tokenizer, adapters=cache, prefix_cache_bytes=0)
    adapter = cache.resolve(31, *export(peft_adapter(tiny_lm[0], seed=4)))
    prompts = [_prompt(q) for q in QUESTIONS]

    def run(on: GenerationEngine, with_adapter: Any) -> list[str]:
        return [
            c.text for c in on.generate([GenerationRequest(p, 12, adapter=with_adapter) for p in prompts])
        ]

    base_texts, adapter_texts = run(engine, None), run(engine, adapter)
    assert base_texts == run(reference, None) and adapter_texts == run(reference, adapter)
    assert base_texts != adapter_texts
    assert engine.prefixes.hit_tokens == 0  # the adapter's rows never took the base's blocks
    mixed = [GenerationRequest(p, 12, adapter=adapter if i % 2 else None) for i, p in enumerate(prompts)]
    expected = [adapter_texts[i] if i % 2 else base_texts[i] for i in range(len(prompts))]
    assert [c.text for c in engine.generate(mixed)] == expected
    assert engine.prefixes.hit_tokens > 0


def test_one_new_prompt_is_filled_first_instead_of_padding_the_batch(
    tiny_engine: GenerationEngine, whole: GenerationEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _texts(tiny_engine, [_prompt(q) for q in QUESTIONS])
    new = SYSTEM.replace("You route", "Route these in three words or less. You route") * 2
    batch = [_prompt(QUESTIONS[0], new)] + [_prompt(q) for q in QUESTIONS[1:]] * 2
    widths: list[int] = []
    model = tiny_engine.model
    real_forward = model.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        if kwargs["input_ids"].shape[1] > 1:  # a prompt pass, not a decode step
            widths.append(kwargs["input_ids"].shape[1])
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    assert _texts(tiny_engine, batch) == _texts(whole, batch)
    fill, batch_pass = widths[0], widths[1]
    assert len(widths) == 2 + 1  # the fill pass, the batch pass, then the reference engine's one pass
    assert batch_pass <= 2 * BLOCK < fill  # every row computed a short tail, none padded to the new one
