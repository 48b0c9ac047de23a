"""The engine's decode attention computes what SDPA computes, grouped-query heads and padding included."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from cumulus.engine.attention import decode_attention


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (9, 3), (14, 2)])
def test_one_query_matches_sdpa_with_grouped_heads_and_left_padding(heads: int, kv_heads: int) -> None:
    generator = torch.Generator().manual_seed(heads)
    batch, length, dim = 3, 11, 16
    query = torch.randn(batch, heads, 1, dim, generator=generator)
    key = torch.randn(batch, kv_heads, length, dim, generator=generator)
    value = torch.randn(batch, kv_heads, length, dim, generator=generator)
    mask = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    mask[1, ..., :4] = False  # left padding
    mask[2, ..., :9] = False
    module = SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True)

    ours, _ = decode_attention(module, query, key, value, mask, scaling=0.3)  # type: ignore[arg-type]
    sdpa, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)  # type: ignore[arg-type]

    assert ours.shape == sdpa.shape == (batch, 1, heads, dim)
    torch.testing.assert_close(ours, sdpa, rtol=1e-5, atol=1e-5)


def test_without_a_mask_every_position_is_attended() -> None:
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 6, n, 8, generator=generator) for n in (1, 5, 5))
    module = SimpleNamespace(num_key_value_groups=1, is_causal=True)
    ours, _ = decode_attention(module, query, key, value, None)  # type: ignore[arg-type]
    sdpa, _ = sdpa_attention_forward(module, query, key, value, None)  # type: ignore[arg-type]
    torch.testing.assert_close(ours, sdpa, rtol=1e-5, atol=1e-5)


def test_prompts_go_through_sdpa() -> None:
    generator = torch.Generator().manual_seed(1)
    query, key, value = (torch.randn(2, 4, 5, 8, generator=generator) for _ in range(3))
    module = SimpleNamespace(num_key_value_groups=1, is_causal=True)
    ours, _ = decode_attention(module, query, key, value, None)  # type: ignore[arg-type]
    sdpa, _ = sdpa_attention_forward(module, query, key, value, None)  # type: ignore[arg-type]
    assert torch.equal(ours, sdpa)
