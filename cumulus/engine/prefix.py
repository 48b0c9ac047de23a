"""Prefix caching: the KV of prompt blocks already seen is reused instead of computed again.

An application's requests share most of their prompt: the chat template, the system prompt and
the tool schemas come before the user's question (the demo's tool-calling prompts: ~250 of ~290
tokens are one of twelve tool preambles). On CPU, prefill is where the time goes (a batch of 15
such prompts: ~4,300 prompt tokens against ~700 generated), so a prompt whose first blocks were
computed before only computes its own tail. This is vLLM's automatic prefix caching and
TensorRT-LLM's KV cache reuse in their simplest form:

- prompts are cut into blocks of ``BLOCK`` tokens; a block is named by a hash chained over every
  token before it, so equal names mean equal prefixes (and the tokens are compared on a hit, so a
  hash collision can never serve a wrong cache);
- each block's keys and values are stored once, for every layer, whichever prompt brought it;
- least recently used blocks are evicted first, leaves before the blocks they extend, within a
  budget in bytes.

A token's KV depends only on the tokens before it, their positions and the weights, so a block is
exact for any prompt that starts with the same tokens under the same adapter (adapters change
the k/v projections): blocks are keyed by the row's ``LoraWeights`` object (None: the base
model), never by task id, since weights re-sent for a task id are a new object.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

BLOCK = 16
"""Tokens per cached block (vLLM's default)."""

MIN_REUSE_TOKENS = 32
"""Shorter matches are not reused: a chat template's opening alone is a few tokens."""


@dataclass
class _Block:
    tokens: tuple[int, ...]
    """Every token of the prefix up to and including this block (checked on each hit)."""
    kv: torch.Tensor
    """``[layers, 2, kv_heads, BLOCK, head_dim]``: this block's keys (0) and values (1)."""


@dataclass(frozen=True)
class Match:
    """The cached start of one prompt: ``kv [layers, 2, kv_heads, tokens, head_dim]``."""

    tokens: int
    kv: torch.Tensor | None


def _chain(prompt: Sequence[int], blocks: int, adapter: Any) -> list[tuple[Any, int]]:
    """The names of the first ``blocks`` blocks of ``prompt``."""
    names, previous = [], hash(("cumulus-prefix", id(adapter)))
    for b in range(blocks):
        previous = hash((previous, tuple(prompt[b * BLOCK : (b + 1) * BLOCK])))
        names.append((adapter, previous))
    return names


class PrefixCache:
    """Cached prompt blocks, looked up per row and filled from each batch's prefill."""

    def __init__(self, *, max_bytes: int = 256 << 20, min_tokens: int = MIN_REUSE_TOKENS) -> None:
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self._blocks: OrderedDict[tuple[Any, int], _Block] = OrderedDict()
        self._bytes = 0
        self.hit_tokens = 0
        """Prompt tokens served from the cache (for the engine's batch log)."""

    def match(self, prompt: Sequence[int], adapter: Any) -> Match:
        """The longest cached, block-aligned start of ``prompt``; always leaves it one token to compute.

        The last prompt token must go through the forward pass: its logits pick the first token.
        """
        found: list[torch.Tensor] = []
        names = _chain(prompt, (len(prompt) - 1) // BLOCK, adapter)
        for n, name in enumerate(names):
            block = self._blocks.get(name)
            if block is None or block.tokens != tuple(prompt[: (n + 1) * BLOCK]):
                break
            found.append(block.kv)
        if len(found) * BLOCK < self.min_tokens:
            return Match(0, None)
        for name in reversed(names[: len(found)]):  # the chain's start ends most recent: leaves go first
            self._blocks.move_to_end(name)
        self.hit_tokens += len(found) * BLOCK
        return Match(len(found) * BLOCK, torch.cat(found, dim=3))

    def store(self, prompt: Sequence[int], adapter: Any, kv: torch.Tensor, cached: int) -> None:
        """Keep the full blocks of ``prompt`` beyond its first ``cached`` tokens (a block-aligned match).

        ``kv [layers, 2, kv_heads, len(prompt) - cached, head_dim]``: the row's computed keys and values.
        """
        blocks = len(prompt) // BLOCK
        names = _chain(prompt, blocks, adapter)
        for b in range(cached // BLOCK, blocks):
            if names[b] in self._blocks:
                continue
            start = b * BLOCK - cached
            block = kv[:, :, :, start : start + BLOCK].clone()
            self._blocks[names[b]] = _Block(tuple(prompt[: (b + 1) * BLOCK]), block)
            self._bytes += block.nbytes
        for name in reversed(names[cached // BLOCK :]):
            if name in self._blocks:
                self._blocks.move_to_end(name)
        while self._bytes > self.max_bytes and self._blocks:
            _, evicted = self._blocks.popitem(last=False)
            self._bytes -= evicted.kv.nbytes

    @property
    def cached_blocks(self) -> int:
        return len(self._blocks)

    def clear(self) -> None:
        self._blocks.clear()
        self._bytes = 0


def past_for(matches: Sequence[Match]) -> tuple[Any, torch.Tensor] | None:
    """A batch KV cache holding each row's cached start, right-aligned, and its attention mask.

    None when no row has anything cached. Rows with less are left-padded (mask 0).
    """
    from transformers.cache_utils import DynamicCache

    width = max(m.tokens for m in matches)
    if width == 0:
        return None
    sample = next(m.kv for m in matches if m.kv is not None)
    layers, _, heads, _, dim = sample.shape
    kv = sample.new_zeros((layers, 2, len(matches), heads, width, dim))
    mask = torch.zeros((len(matches), width), dtype=torch.long)
    for b, m in enumerate(matches):
        if m.kv is not None:
            kv[:, :, b, :, width - m.tokens :] = m.kv
            mask[b, width - m.tokens :] = 1
    return DynamicCache([(kv[layer, 0], kv[layer, 1]) for layer in range(layers)]), mask


def row_kv(cache: Any, row: int, positions: torch.Tensor) -> torch.Tensor:
    """Row ``row``'s keys and values at ``positions`` of a batch cache: ``[layers, 2, heads, n, dim]``."""
    return torch.stack(
        [
            torch.stack((layer.keys[row, :, positions], layer.values[row, :, positions]))
            for layer in cache.layers
        ]
    )
