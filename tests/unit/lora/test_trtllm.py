"""TensorRT-LLM's LoRA layout (hf_lora_convert) and the stable lora_task_id."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cumulus.errors import InvalidArgument
from cumulus.lora import MODULE_IDS, lora_task_id, peft_to_trtllm, trtllm_to_modules

DIMS = {"q_proj": (8, 8), "k_proj": (8, 4), "v_proj": (8, 4), "o_proj": (8, 8), "down_proj": (12, 8)}


def _key(layer: int, module: str, side: str) -> str:
    group = "mlp" if module in ("gate_proj", "up_proj", "down_proj") else "self_attn"
    return f"base_model.model.model.layers.{layer}.{group}.{module}.lora_{side}.weight"


def _state(rank: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = {}
    for layer in (0, 1):
        for module, (in_dim, out_dim) in DIMS.items():
            state[_key(layer, module, "A")] = torch.randn(rank, in_dim)
            state[_key(layer, module, "B")] = torch.randn(out_dim, rank)
    return state


def test_module_ids_are_tensorrt_llms() -> None:
    # tensorrt_llm/lora_manager.py LORA_MODULE_IDS, mapped as examples/hf_lora_convert.py maps them.
    assert MODULE_IDS == {
        "q_proj": 1, "k_proj": 2, "v_proj": 3, "o_proj": 4, "gate_proj": 5, "down_proj": 6, "up_proj": 7
    }  # fmt: skip


def test_rows_hold_a_then_scaled_b_padded_to_the_widest() -> None:
    state = _state()
    weights, config = peft_to_trtllm(state, alpha=4.0)
    assert weights.dtype == np.float16 and weights.shape == (1, 10, 2 * (12 + 8))
    assert config.dtype == np.int32 and config[0, :5].tolist() == [
        [1, 0, 2],
        [2, 0, 2],
        [3, 0, 2],
        [4, 0, 2],
        [6, 0, 2],
    ]
    a, b = state[_key(0, "k_proj", "A")], state[_key(0, "k_proj", "B")]
    row = torch.from_numpy(weights[0, 1].astype(np.float32))
    assert torch.allclose(row[:16], a.flatten(), atol=1e-3)
    assert torch.allclose(row[16:24], (b * 2.0).flatten(), atol=2e-3)  # scale alpha / rank = 2
    assert not row[24:].any()  # padding


def test_rslora_scale_is_alpha_over_sqrt_rank() -> None:
    state = _state(rank=3)
    weights, _ = peft_to_trtllm(state, alpha=6.0, use_rslora=True)
    b = state[_key(0, "q_proj", "B")]
    row = torch.from_numpy(weights[0, 0].astype(np.float32))
    assert torch.allclose(row[24:48], (b * 6.0 / 3**0.5).flatten(), atol=5e-3)


def test_round_trip_gives_back_the_modules() -> None:
    state = _state()
    modules = trtllm_to_modules(*peft_to_trtllm(state, alpha=2.0, dtype=np.float32), DIMS, num_layers=2)
    assert len(modules) == 10
    down = next(m for m in modules if m.layer == 1 and m.module == "down_proj")
    assert torch.allclose(down.a, state[_key(1, "down_proj", "A")])
    assert torch.allclose(down.b, state[_key(1, "down_proj", "B")])


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ([[9, 0, 2]], "lora_config"),  # cross-attention: not served
        ([[1, 5, 2]], "lora_config"),  # no layer 5
        ([[1, 0, 64]], "lora_config"),  # rank larger than the row
        ([[1, 0, 2], [1, 0, 2]], "lora_config"),  # the same module twice
    ],
)
def test_malformed_tensors_are_refused_naming_the_input(config: list[list[int]], field: str) -> None:
    weights = np.zeros((1, len(config), 40), dtype=np.float16)
    with pytest.raises(InvalidArgument) as caught:
        trtllm_to_modules(weights, np.array([config], dtype=np.int32), DIMS, num_layers=2)
    assert caught.value.field == field


def test_nan_weights_are_refused() -> None:
    weights = np.full((1, 1, 40), np.nan, dtype=np.float16)
    with pytest.raises(InvalidArgument, match="lora_weights: contains NaN"):
        trtllm_to_modules(weights, np.array([[[1, 0, 2]]], dtype=np.int32), DIMS, num_layers=2)


def test_lora_task_id_is_stable_non_zero_and_fits_int64() -> None:
    ids = {lora_task_id(f"ad-{i}") for i in range(1000)}
    assert len(ids) == 1000 and 0 not in ids and max(ids) < 2**63
    assert lora_task_id("ad-20261128-101010-abcdef01") == lora_task_id("ad-20261128-101010-abcdef01")
