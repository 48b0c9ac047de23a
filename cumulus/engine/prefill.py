"""A batch's prompt pass over the prefix cache: only what is not cached is computed, padded little.

Each row's cached start comes from ``PrefixCache`` and only the rest of the prompt goes through the
model. One batch pads every row to the longest uncached part, so a single cache miss (a new system
prompt, a new tool) would make every row of its batch compute as many tokens as the miss. When
that padding would cost more than it saves, the long rows first go through a *fill* pass of their
own (their full blocks are computed and cached), and then the whole batch runs with short tails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers.cache_utils import DynamicCache

from cumulus.engine.prefix import BLOCK, Match, PrefixCache, past_for, row_kv

if TYPE_CHECKING:
    from cumulus.engine.multilora import LoraWeights, MultiLora

_SPLIT_WORTH = 0.8
"""Fill pass first only when it is estimated to cost under this share of one padded pass."""


def prefill(
    model: Any,
    pad_id: int,
    prefixes: PrefixCache,
    prompts: Sequence[Sequence[int]],
    adapters: Sequence[LoraWeights | None],
    lora: MultiLora | None,
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The prompts' forward pass: ``(model output, attention mask, each row's last position)``.

    ``lora`` is bound to ``adapters`` on entry and on return (a fill pass rebinds it meanwhile).
    """
    matches = [prefixes.match(p, a) for p, a in zip(prompts, adapters, strict=True)]
    long_rows = _rows_to_fill_first(prefixes, prompts, matches)
    if long_rows:
        if lora is not None:
            lora.bind([adapters[b] for b in long_rows])
        # Each long row up to its last full block before its final token: exactly what match reuses.
        heads = [list(prompts[b][: (len(prompts[b]) - 1) // BLOCK * BLOCK]) for b in long_rows]
        _forward(
            model, pad_id, prefixes, heads, [adapters[b] for b in long_rows], [matches[b] for b in long_rows]
        )
        if lora is not None:
            lora.bind(adapters)
        matches = [prefixes.match(p, a) for p, a in zip(prompts, adapters, strict=True)]
    return _forward(model, pad_id, prefixes, prompts, adapters, matches)


def _rows_to_fill_first(
    prefixes: PrefixCache, prompts: Sequence[Sequence[int]], matches: Sequence[Match]
) -> list[int]:
    """The rows worth a fill pass of their own; none when one padded pass is cheaper (in tokens)."""
    if prefixes.max_bytes == 0:  # nothing would be kept for the batch pass to reuse
        return []
    own = [len(p) - m.tokens for p, m in zip(prompts, matches, strict=True)]
    one_pass = len(own) * max(own)
    tail = 2 * BLOCK  # what a row still computes after a fill pass, at most
    long_rows = [b for b, n in enumerate(own) if n > tail]
    if not long_rows or len(long_rows) == len(own):
        return []
    split = len(long_rows) * max(own[b] for b in long_rows) + len(own) * tail
    return long_rows if split < _SPLIT_WORTH * one_pass else []


def _forward(
    model: Any,
    pad_id: int,
    prefixes: PrefixCache,
    prompts: Sequence[Sequence[int]],
    adapters: Sequence[LoraWeights | None],
    matches: Sequence[Match],
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """One forward pass of the uncached part of ``prompts``; their new full blocks are cached.

    Each row is ``[padding][its cached start][padding][its own tokens]``. Position ids come from
    the mask, so the padding leaves every row at the positions it would have alone.
    """
    past = past_for(matches)
    # A cache of full layers, also for models with sliding-window layers (Gemma 3): the cache the
    # model would build for itself keeps only a window of those layers' keys, and the prefix
    # cache indexes every layer by position. The model's masks still limit what each layer sees.
    cache, cached_mask = (
        past if past is not None else (DynamicCache(), torch.zeros((len(prompts), 0), dtype=torch.long))
    )
    own = [p[m.tokens :] for p, m in zip(prompts, matches, strict=True)]
    width = max(len(tokens) for tokens in own)
    input_ids = torch.full((len(own), width), pad_id, dtype=torch.long)
    own_mask = torch.zeros((len(own), width), dtype=torch.long)
    for b, tokens in enumerate(own):
        input_ids[b, width - len(tokens) :] = torch.tensor(tokens)
        own_mask[b, width - len(tokens) :] = 1
    mask = torch.cat([cached_mask, own_mask], dim=-1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, cached_mask.shape[1] :]
    # logits_to_keep=1: the prompt's other logits would cost batch x length x vocab floats.
    out = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    for b, (prompt, match) in enumerate(zip(prompts, matches, strict=True)):
        if len(prompt) // BLOCK > match.tokens // BLOCK and len(prompt) > prefixes.min_tokens:
            computed = mask.shape[1] - len(own[b]) + torch.arange(len(own[b]))
            prefixes.store(prompt, adapters[b], row_kv(out.past_key_values, b, computed), match.tokens)
    return out, mask, positions[:, -1:]
