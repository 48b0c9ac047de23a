"""Attention for the CPU engine: PyTorch's SDPA for prompts, two batched matmuls for decode steps.

On CPU, ``scaled_dot_product_attention`` with a mask (left-padded batches always have one) runs a
flash-attention kernel built for long queries; for a decode step's single query it costs ~2x the
whole rest of the layer once the context is a few hundred tokens (SmolLM2-135M, batch 8, 400-token
context, one thread: 107 ms per step with SDPA, 47 ms with plain matmuls). A decode step is just
``softmax(q k^T) v`` for one query per row, so it is written out: grouped-query heads are folded
into the matmul's batch (no ``repeat_kv`` copy of the cache) and the softmax runs in fp32, as
transformers' eager attention does.

Registered with transformers' ``AttentionInterface`` under ``ATTENTION`` (its masks are SDPA's
boolean ones, True = attend), so any HF decoder model can use it:
``model.config._attn_implementation = ATTENTION`` (see ``use_decode_attention``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

ATTENTION = "cumulus_decode"


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: ``query [b, heads, q, d]``, ``key``/``value [b, kv_heads, t, d]``."""
    batch, heads, q_length, dim = query.shape
    if q_length != 1 or dropout or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    kv_heads = key.shape[1]
    scale = scaling if scaling is not None else dim**-0.5
    # [b, heads, 1, d] -> [b, kv_heads, group, d]: the heads sharing a KV head become its rows.
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(2, 3)).float() * scale  # [b, kv_heads, group, t]
    if attention_mask is not None:  # SDPA's boolean mask [b, 1, 1, t]
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value)  # [b, kv_heads, group, d]
    return out.reshape(batch, 1, heads, dim), None


def use_decode_attention(model: Any) -> None:
    """Switch a loaded transformers model to ``decode_attention`` (prompts still go through SDPA)."""
    model.config._attn_implementation = ATTENTION


AttentionInterface.register(ATTENTION, decode_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
