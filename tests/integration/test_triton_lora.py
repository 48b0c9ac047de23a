"""The TensorRT-LLM LoRA protocol against the real Triton: miss, resend with weights, then cached.

The same exchange the gateway's cache-miss path runs (services/gateway/triton.py): a request
naming only ``lora_task_id`` is answered with TensorRT-LLM's "not found in cache" error; resent
with ``lora_weights`` + ``lora_config`` it is served with the adapter, which Triton then keeps.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from cumulus.lora import peft_to_trtllm
from cumulus.models import SMOLLM2, ensure_model, load_causal_lm

pytestmark = pytest.mark.integration
SHARED_MODELS = Path(__file__).resolve().parents[2] / ".cumulus" / "models"
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
TASK_ID = 987654321


@pytest.fixture(scope="module")
def adapter_tensors() -> tuple[np.ndarray, np.ndarray]:
    """A random (non-zero) rank-8 LoRA of SmolLM2 in TensorRT-LLM's layout, FP16."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    model, _ = load_causal_lm(ensure_model(SMOLLM2, SHARED_MODELS), "float32")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)  # loud: changes the answer
    return peft_to_trtllm(get_peft_model_state_dict(peft_model), alpha=16)


def _ask(url: str, *, task_id: int | None = None, lora: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """One non-streaming request; (text, None) or (None, error message)."""
    values: dict[str, tuple[str, np.ndarray]] = {
        "text_input": ("BYTES", np.array([[PROMPT.encode()]], dtype=object)),
        "max_tokens": ("INT32", np.array([[8]], dtype=np.int32)),
    }
    if task_id is not None:
        values["lora_task_id"] = ("UINT64", np.array([[task_id]], dtype=np.uint64))
    if lora is not None:
        values["lora_weights"] = ("FP16", lora[0])
        values["lora_config"] = ("INT32", lora[1])
    inputs = []
    for name, (datatype, array) in values.items():
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    received: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: received.put((result, error)))
    try:
        client.async_stream_infer("small", inputs)
        result, error = received.get(timeout=120)
    finally:
        client.stop_stream()
    if error is not None:
        return None, error.message()
    return result.as_numpy("text_output")[0, 0].decode(), None


def test_cache_miss_then_weights_then_cached(triton_server: str, adapter_tensors: Any) -> None:
    base, error = _ask(triton_server)
    assert error is None
    missed = _ask(triton_server, task_id=TASK_ID)
    assert missed == (None, f"LoRA task {TASK_ID} not found in cache. Please send LoRA weights with request")
    with_weights, error = _ask(triton_server, task_id=TASK_ID, lora=adapter_tensors)
    assert error is None and with_weights != base
    assert _ask(triton_server, task_id=TASK_ID) == (with_weights, None)
    assert _ask(triton_server) == (base, None)  # the base model is untouched by the adapter


def test_malformed_lora_config_is_refused_naming_it(triton_server: str, adapter_tensors: Any) -> None:
    weights, config = adapter_tensors
    bad = config.copy()
    bad[0, 0, 0] = 9  # cross_attn_q: not a module of SmolLM2
    text, error = _ask(triton_server, task_id=TASK_ID + 1, lora=(weights, bad))
    assert text is None and error.startswith("lora_config: row 0: module id 9 is not served")
