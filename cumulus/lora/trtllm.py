"""LoRA adapters as TensorRT-LLM's tensors (the ``hf_lora_convert`` layout), both directions.

The layout, as TensorRT-LLM's ``examples/hf_lora_convert.py`` writes it and its LoRA cache reads it:

- ``lora_config`` INT32 ``[1, rows, 3]``: one row per adapted (layer, module): ``module_id``,
  ``layer_idx``, ``adapter_size`` (the rank).
- ``lora_weights`` ``[1, rows, width]`` (FP16 by default): per config row, the ``in`` weights
  (PEFT's ``lora_A``, ``[rank, in_dim]``) flattened, then the ``out`` weights (``lora_B``,
  ``[out_dim, rank]``) flattened with the scale (``alpha / rank``, or ``alpha / sqrt(rank)`` with
  rsLoRA) folded in; each row is zero-padded to the widest one.
- ``module_id`` is TensorRT-LLM's ``LoraManager.LORA_MODULE_IDS`` number of the module, mapped
  from Hugging Face names the way ``hf_lora_convert`` maps them (note ``gate_proj`` is
  ``mlp_h_to_4h`` and ``up_proj`` is ``mlp_gate``).

The trainer exports with :func:`peft_to_trtllm`; the CPU backend reads request tensors (and the
registry's export) with :func:`trtllm_to_modules`, which refuses anything malformed by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from cumulus.errors import InvalidArgument

TRTLLM_MODULE_IDS: dict[str, int] = {
    "attn_qkv": 0,
    "attn_q": 1,
    "attn_k": 2,
    "attn_v": 3,
    "attn_dense": 4,
    "mlp_h_to_4h": 5,
    "mlp_4h_to_h": 6,
    "mlp_gate": 7,
}
"""TensorRT-LLM's numbering (tensorrt_llm/lora_manager.py, LoraManager.LORA_MODULE_IDS)."""

HF_TO_TRTLLM: dict[str, str] = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_dense",
    "gate_proj": "mlp_h_to_4h",
    "down_proj": "mlp_4h_to_h",
    "up_proj": "mlp_gate",
}
"""Llama-family module names -> TensorRT-LLM module names (as in hf_lora_convert.py)."""

MODULE_IDS: dict[str, int] = {hf: TRTLLM_MODULE_IDS[trt] for hf, trt in HF_TO_TRTLLM.items()}
MODULE_NAMES: dict[int, str] = {module_id: hf for hf, module_id in MODULE_IDS.items()}
SUPPORTED_TARGETS = tuple(MODULE_IDS)

_PEFT_KEY = re.compile(r".*\.layers\.(\d+)\.(?:self_attn|mlp)\.([a-z_]+)\.lora_(A|B)\.weight$")


@dataclass(frozen=True)
class ModuleLora:
    """The LoRA of one (layer, module): ``delta(x) = x @ a.T @ b.T`` (scale already in ``b``)."""

    layer: int
    module: str
    a: torch.Tensor
    """``[rank, in_dim]``"""
    b: torch.Tensor
    """``[out_dim, rank]``, scaled."""

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


def lora_scale(rank: int, alpha: float, use_rslora: bool = False) -> float:
    """PEFT's scaling of a LoRA's output: ``alpha / rank`` (``alpha / sqrt(rank)`` with rsLoRA)."""
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


def peft_to_trtllm(
    state: Mapping[str, torch.Tensor],
    *,
    alpha: float,
    use_rslora: bool = False,
    dtype: npt.DTypeLike = np.float16,
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.int32]]:
    """A PEFT LoRA state dict -> (``lora_weights [1, rows, width]``, ``lora_config [1, rows, 3]``)."""
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _PEFT_KEY.match(key)
        if match is None:
            raise InvalidArgument("adapter", f"weight {key!r} is not a LoRA A/B of a decoder layer module")
        layer, module, side = int(match[1]), match[2], match[3]
        if module not in MODULE_IDS:
            raise InvalidArgument(
                "adapter", f"module {module!r} has no TensorRT-LLM LoRA id", fix=f"target {SUPPORTED_TARGETS}"
            )
        pairs.setdefault((layer, module), {})[side] = tensor.detach().float().cpu()
    rows: list[torch.Tensor] = []
    config: list[list[int]] = []
    order = sorted(pairs, key=lambda key: (key[0], MODULE_IDS[key[1]]))
    for layer, module in order:
        sides = pairs[(layer, module)]
        missing = sorted({"A", "B"} - sides.keys())
        if missing:
            raise InvalidArgument("adapter", f"layer {layer} {module} has no lora_{missing[0]}")
        a, b = sides["A"], sides["B"]
        rank = a.shape[0]
        if b.shape[1] != rank or rank >= min(a.shape[1], b.shape[0]):
            raise InvalidArgument("adapter", f"layer {layer} {module}: A {list(a.shape)} / B {list(b.shape)}")
        scaled = b * lora_scale(rank, alpha, use_rslora)
        rows.append(torch.cat([a.flatten(), scaled.flatten()]))
        config.append([MODULE_IDS[module], layer, rank])
    if not rows:
        raise InvalidArgument("adapter", "no LoRA weights found")
    width = max(row.numel() for row in rows)
    weights = torch.stack([torch.nn.functional.pad(row, (0, width - row.numel())) for row in rows])
    return weights.numpy().astype(dtype)[np.newaxis], np.asarray(config, dtype=np.int32)[np.newaxis]


def trtllm_to_modules(
    weights: npt.NDArray[np.generic],
    config: npt.NDArray[np.generic],
    dims: Mapping[str, tuple[int, int]],
    num_layers: int,
) -> list[ModuleLora]:
    """Request tensors -> one ``ModuleLora`` per row; InvalidArgument names what is malformed.

    ``dims`` maps each module name the model has to its ``(in_dim, out_dim)``.
    """
    weights = weights[0] if weights.ndim == 3 and weights.shape[0] == 1 else weights
    config = config[0] if config.ndim == 3 and config.shape[0] == 1 else config
    if config.ndim != 2 or config.shape[1] != 3 or not np.issubdtype(config.dtype, np.integer):
        got = f"{config.dtype} {list(config.shape)}"
        raise InvalidArgument("lora_config", f"expected INT32 [rows, 3], got {got}")
    if weights.ndim != 2 or weights.shape[0] != config.shape[0]:
        raise InvalidArgument(
            "lora_weights", f"expected [{config.shape[0]}, width] like lora_config, got {list(weights.shape)}"
        )
    table = torch.from_numpy(np.ascontiguousarray(weights)).float()
    if not bool(torch.isfinite(table).all()):
        raise InvalidArgument("lora_weights", "contains NaN or infinite values")
    modules: list[ModuleLora] = []
    seen: set[tuple[int, str]] = set()
    for row, (module_id, layer, rank) in enumerate(config.tolist()):
        module = MODULE_NAMES.get(module_id)
        if module is None or module not in dims:
            raise InvalidArgument(
                "lora_config", f"row {row}: module id {module_id} is not served", fix=f"use {MODULE_IDS}"
            )
        if not 0 <= layer < num_layers or (layer, module) in seen:
            problem = f"row {row}: layer {layer} ({module}) is out of range or repeated"
            raise InvalidArgument("lora_config", problem)
        in_dim, out_dim = dims[module]
        if not 0 < rank < min(in_dim, out_dim) or rank * (in_dim + out_dim) > table.shape[1]:
            raise InvalidArgument("lora_config", f"row {row}: adapter size {rank} does not fit {module}")
        seen.add((layer, module))
        a = table[row, : rank * in_dim].reshape(rank, in_dim)
        b = table[row, rank * in_dim : rank * (in_dim + out_dim)].reshape(out_dim, rank)
        modules.append(ModuleLora(layer, module, a, b))
    return modules
