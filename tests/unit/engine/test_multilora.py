"""Multi-LoRA serving: TensorRT-LLM tensors in, PEFT's logits out; mixed batches; the registry."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

from cumulus.artifacts import ArtifactStore
from cumulus.engine.adapter_cache import AdapterCache, LoraTaskNotCached, resolve_adapter
from cumulus.engine.backend import GenerationEngine, GenerationRequest
from cumulus.engine.multilora import MultiLora
from cumulus.errors import ArtifactError, InvalidArgument
from cumulus.lora import AdapterRegistry, lora_task_id, peft_to_trtllm
from cumulus.lora.registry import register_adapter
from cumulus.models import TINY_LLAMA
from services.inference.protocol import parse_request
from services.inference.scheduler import BatchScheduler

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPTS = ["Hello there, how are you", "Tell me a story about a cat", "1 2 3 4", "Route this ticket"]


def peft_adapter(base: Any, seed: int, rank: int = 8, targets: list[str] = TARGETS) -> Any:
    """A PEFT model on a copy of ``base`` with a random (non-zero) LoRA, like a trained one."""
    model = get_peft_model(
        copy.deepcopy(base), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets)
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


def export(peft_model: Any, rank: int = 8) -> tuple[np.ndarray, np.ndarray]:
    return peft_to_trtllm(get_peft_model_state_dict(peft_model), alpha=2 * rank)


@pytest.fixture
def served(tiny_lm: tuple[Any, Any]) -> tuple[AdapterCache, GenerationEngine]:
    model, tokenizer = copy.deepcopy(tiny_lm[0]), tiny_lm[1]
    cache = AdapterCache(MultiLora(model, slots=5), model_id=TINY_LLAMA, registry=None, max_adapters=8)
    return cache, GenerationEngine(model, tokenizer, adapters=cache)


def _logits(model: Any, tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        return model(**encoded).logits


def test_peft_adapter_through_tensorrt_llm_tensors_serves_peft_logits(
    tiny_lm: tuple[Any, Any], served: tuple[AdapterCache, GenerationEngine]
) -> None:
    base, tokenizer = tiny_lm
    cache, engine = served
    peft_model = peft_adapter(base, seed=1)
    adapter = cache.resolve(11, *export(peft_model))  # FP16 on the wire, as TensorRT-LLM takes it
    expected = _logits(peft_model, tokenizer, PROMPTS)
    cache.lora.bind([adapter] * len(PROMPTS))
    try:
        got = _logits(engine.model, tokenizer, PROMPTS)
    finally:
        cache.lora.release()
    assert (expected - _logits(base, tokenizer, PROMPTS)).abs().max() > 0.05  # the adapter matters
    torch.testing.assert_close(got, expected, atol=3e-3, rtol=0)


def test_mixed_batch_outputs_equal_each_adapter_run_alone(
    tiny_lm: tuple[Any, Any], served: tuple[AdapterCache, GenerationEngine]
) -> None:
    base, tokenizer = tiny_lm
    cache, engine = served
    peft_models = [peft_adapter(base, seed=s) for s in (1, 2, 3)]
    adapters = [cache.resolve(20 + i, *export(m)) for i, m in enumerate(peft_models)]
    rows = [adapters[0], None, adapters[1], adapters[2]]  # three adapters and the bare base
    # One forward pass for the mixed batch (prefill and decode paths) ...
    cache.lora.bind(rows)
    try:
        mixed = _logits(engine.model, tokenizer, PROMPTS)
    finally:
        cache.lora.release()
    references = [peft_models[0], base, peft_models[1], peft_models[2]]
    for i, reference in enumerate(references):
        torch.testing.assert_close(mixed[i], _logits(reference, tokenizer, PROMPTS)[i], atol=3e-3, rtol=0)
    # ... and whole generations: every row says what it says when it runs alone.
    requests = [GenerationRequest(p, 12, adapter=a) for p, a in zip(PROMPTS, rows, strict=True)]
    together = [c.text for c in engine.generate(requests)]
    alone = [engine.generate([r])[0].text for r in requests]
    assert together == alone
    assert len(set(together)) > 1


def test_slots_are_reused_when_adapters_outnumber_them(tiny_lm: tuple[Any, Any]) -> None:
    base, tokenizer = tiny_lm
    model = copy.deepcopy(base)
    cache = AdapterCache(MultiLora(model, slots=3), model_id=TINY_LLAMA, registry=None, max_adapters=8)
    engine = GenerationEngine(model, tokenizer, adapters=cache)
    peft_models = [peft_adapter(base, seed=s, targets=["q_proj", "v_proj"]) for s in range(4)]
    adapters = [cache.resolve(30 + i, *export(m)) for i, m in enumerate(peft_models)]
    first = [engine.generate([GenerationRequest(PROMPTS[0], 8, adapter=a)])[0].text for a in adapters]
    for pair in ([adapters[3], adapters[0]], [adapters[1], adapters[2]], [adapters[0], adapters[3]]):
        texts = [c.text for c in engine.generate([GenerationRequest(PROMPTS[0], 8, adapter=a) for a in pair])]
        assert texts == [first[adapters.index(a)] for a in pair]
    with pytest.raises(InvalidArgument, match="3 adapters in one batch; 2 fit"):
        engine.generate([GenerationRequest(PROMPTS[0], 2, adapter=a) for a in adapters[:3]])


def test_cache_keeps_the_most_recently_used_adapters(
    tiny_lm: tuple[Any, Any], served: tuple[AdapterCache, GenerationEngine]
) -> None:
    cache, _ = served
    cache.max_adapters = 2
    tensors = export(peft_adapter(tiny_lm[0], seed=5))
    for task_id in (1, 2):
        cache.resolve(task_id, *tensors)
    cache.resolve(1, None, None)  # a hit: task 1 becomes the most recent
    cache.resolve(3, *tensors)
    assert 1 in cache and 3 in cache and 2 not in cache
    with pytest.raises(LoraTaskNotCached) as caught:
        cache.resolve(2, None, None)
    assert str(caught.value) == "LoRA task 2 not found in cache. Please send LoRA weights with request"


def _register(tmp_path: Path, peft_model: Any, adapter_id: str, base_model: str = TINY_LLAMA) -> Path:
    peft_dir = tmp_path / f"peft-{adapter_id}"
    peft_model.save_pretrained(peft_dir)
    store = ArtifactStore(tmp_path / "artifacts")
    fields = {"base_model": base_model, "status": "ready"}
    register_adapter(
        store,
        workflow="wf",
        adapter_id=adapter_id,
        peft_dir=peft_dir,
        export=export(peft_model),
        fields=fields,
    )
    return store.path("adapters", "wf", adapter_id)


def test_registered_adapter_is_served_by_task_id_and_a_tampered_one_refused(
    tiny_lm: tuple[Any, Any], tmp_path: Path
) -> None:
    base = tiny_lm[0]
    path = _register(tmp_path, peft_adapter(base, seed=7), "ad-good")
    _register(tmp_path, peft_adapter(base, seed=8), "ad-other-model", base_model="smollm2-135m-instruct")

    def fresh_cache() -> AdapterCache:
        registry = AdapterRegistry(tmp_path / "artifacts")
        lora = MultiLora(copy.deepcopy(base), slots=2)
        return AdapterCache(lora, model_id=TINY_LLAMA, registry=registry, max_adapters=4)

    adapter = fresh_cache().resolve(lora_task_id("ad-good"), None, None)
    assert adapter is not None and adapter.task_id == lora_task_id("ad-good")
    with pytest.raises(InvalidArgument, match="trained on 'smollm2-135m-instruct'"):
        fresh_cache().resolve(lora_task_id("ad-other-model"), None, None)
    with pytest.raises(LoraTaskNotCached):
        fresh_cache().resolve(lora_task_id("ad-never-trained"), None, None)

    weights = path / "trtllm" / "model.lora_weights.npy"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as caught:
        fresh_cache().resolve(lora_task_id("ad-good"), None, None)
    assert "model.lora_weights.npy" in str(caught.value) and "does not match the manifest" in str(
        caught.value
    )


def test_a_model_without_adapters_keeps_refusing_them() -> None:
    assert resolve_adapter(None, None, None, None) is None
    with pytest.raises(LoraTaskNotCached):
        resolve_adapter(None, 7, None, None)
    with pytest.raises(InvalidArgument, match="serves no LoRA adapters"):
        resolve_adapter(None, 7, np.zeros((1, 1, 4), np.float16), np.zeros((1, 1, 3), np.int32))


def test_protocol_caches_sent_weights_for_later_requests_by_task_id(
    tiny_lm: tuple[Any, Any], served: tuple[AdapterCache, GenerationEngine]
) -> None:
    engine = served[1]
    scheduler = BatchScheduler(engine, name="small", max_batch_size=4, batch_delay_s=0.0)  # not started
    weights, config = export(peft_adapter(tiny_lm[0], seed=9))
    inputs = {
        "text_input": np.array([[b"Hello"]], dtype=object),
        "max_tokens": np.array([[4]], dtype=np.int32),
        "lora_task_id": np.array([[77]], dtype=np.uint64),
    }
    with pytest.raises(LoraTaskNotCached):
        parse_request(inputs, scheduler, 16)
    first, _ = parse_request(inputs | {"lora_weights": weights, "lora_config": config}, scheduler, 16)
    again, _ = parse_request(inputs, scheduler, 16)
    assert first.adapter is not None and again.adapter is first.adapter


def test_weights_under_a_held_task_id_cannot_be_replaced(tiny_lm: tuple[Any, Any], tmp_path: Path) -> None:
    base = tiny_lm[0]
    mine, theirs = export(peft_adapter(base, seed=1)), export(peft_adapter(base, seed=2))
    cache = AdapterCache(
        MultiLora(copy.deepcopy(base), slots=3), model_id=TINY_LLAMA, registry=None, max_adapters=4
    )
    held = cache.resolve(77, *mine)
    assert cache.resolve(77, *mine) is not None  # the same weights again (a resend): fine
    with pytest.raises(InvalidArgument, match="LoRA task 77 is held with other weights"):
        cache.resolve(77, *theirs)
    assert cache.resolve(77, None, None) is held

    # A registered adapter's task id is held by the store, even when no cache has it yet.
    registered = peft_adapter(base, seed=7)
    _register(tmp_path, registered, "ad-registered")
    registry = AdapterRegistry(tmp_path / "artifacts")
    fresh = AdapterCache(
        MultiLora(copy.deepcopy(base), slots=3), model_id=TINY_LLAMA, registry=registry, max_adapters=4
    )
    with pytest.raises(InvalidArgument, match="held with other weights"):
        fresh.resolve(lora_task_id("ad-registered"), *theirs)
    assert fresh.resolve(lora_task_id("ad-registered"), *export(registered)) is not None
