"""The generation engine: one transformers causal LM, a batch of prompts, token by token.

A hand-written decode loop rather than ``model.generate`` because each request in a batch has its
own ``max_tokens``, sampling settings and stop words, and streaming needs text deltas per request.
Prompts are left-padded, position ids come from the attention mask (so a padded row sees the same
positions as it would alone), and rows that finish are dropped from the KV cache so they stop
costing compute. The engine is not thread-safe: one scheduler thread owns it.

With ``adapters`` (an ``AdapterCache`` over the model wrapped by ``MultiLora``) each request may
carry its own LoRA adapter: a batch mixing adapters and bare-base rows runs as one forward pass.
Prompts reuse the KV of blocks seen before (cumulus/engine/prefix.py, prefill.py); decode steps use
the engine's own attention (cumulus/engine/attention.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from cumulus.engine.attention import use_decode_attention
from cumulus.engine.prefill import prefill
from cumulus.engine.prefix import MIN_REUSE_TOKENS, PrefixCache

if TYPE_CHECKING:
    from cumulus.engine.adapter_cache import AdapterCache
    from cumulus.engine.multilora import LoraWeights, MultiLora

_INCOMPLETE_UTF8 = "\ufffd"


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and how to continue it. ``temperature == 0`` means greedy."""

    prompt: str
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    """Stop strings: output ends before the first one and never contains it (OpenAI semantics)."""
    adapter: LoraWeights | None = field(default=None, compare=False)
    """The LoRA adapter this request runs with (resolved by ``AdapterCache``); None: the base model."""


@dataclass(frozen=True)
class Chunk:
    """New output of one request after one decode step (only sent when there is news)."""

    index: int
    """Position of the request in the batch passed to ``GenerationEngine.stream``."""
    text: str
    """Text since the previous chunk; chunks of a request concatenate to its full completion."""
    prompt_tokens: int
    completion_tokens: int
    """Tokens sampled so far, including an EOS or the tokens that completed a stop string."""
    finish_reason: str | None = None
    """None while generating; ``stop`` (EOS or stop string) or ``length`` (max_tokens) at the end."""


@dataclass
class _Row:
    """Decode state of one request."""

    request: GenerationRequest
    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    sent: str = ""
    finish_reason: str | None = None


class GenerationEngine:
    """Batched generation over one model and its tokenizer (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        seed: int = 0,
        adapters: AdapterCache | None = None,
        prefix_cache_bytes: int = 256 << 20,
        min_reused_prefix: int = MIN_REUSE_TOKENS,
    ) -> None:
        self.model = model
        self.prefixes = PrefixCache(max_bytes=prefix_cache_bytes, min_tokens=min_reused_prefix)
        use_decode_attention(model)  # SDPA's CPU kernel is slow for one-token queries
        self.adapters = adapters
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.eos_ids = _eos_ids(model, tokenizer)
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self._sampler = torch.Generator().manual_seed(seed)

    def count_tokens(self, text: str) -> int:
        """Prompt tokens ``text`` costs (the same tokenization ``stream`` uses); thread-safe."""
        return len(self._encode(text))

    def _encode(self, text: str) -> list[int]:
        # One text at a time and padded by hand: asking the fast tokenizer to pad changes its
        # state, and the server counts tokens on another thread while this one generates.
        ids: list[int] = self.tokenizer(text).input_ids
        return ids

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Chunk]:
        """Run ``requests`` to completion; one chunk per request holding its whole output."""
        texts = [""] * len(requests)
        final: list[Chunk | None] = [None] * len(requests)
        for chunks in self.stream(requests):
            for chunk in chunks:
                texts[chunk.index] += chunk.text
                if chunk.finish_reason:
                    final[chunk.index] = chunk
        return [
            Chunk(i, texts[i], c.prompt_tokens, c.completion_tokens, c.finish_reason)
            for i, c in enumerate(final)
            if c is not None
        ]

    @torch.inference_mode()
    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Chunk]]:
        """Yield, after every decode step, the chunks of the requests that produced new text or ended."""
        if not requests:
            return
        prompts = [self._encode(r.prompt) for r in requests]
        if not all(prompts):
            raise ValueError("every prompt needs at least one token")
        lora = self.adapters.lora if self.adapters is not None else None
        if lora is None:
            if any(r.adapter is not None for r in requests):
                raise ValueError("this engine serves no LoRA adapters")
            yield from self._decode(requests, prompts, None)
            return
        lora.bind([r.adapter for r in requests])
        try:
            yield from self._decode(requests, prompts, lora)
        finally:
            lora.release()

    def _decode(
        self, requests: Sequence[GenerationRequest], prompts: list[list[int]], lora: MultiLora | None
    ) -> Iterator[list[Chunk]]:
        adapters = [r.adapter for r in requests]
        out, mask, positions = prefill(
            self.model, self.tokenizer.pad_token_id, self.prefixes, prompts, adapters, lora
        )
        cache = out.past_key_values
        rows = [_Row(r, len(p)) for r, p in zip(requests, prompts, strict=True)]
        active = list(range(len(rows)))  # batch row -> request index
        while True:
            next_ids = self._pick(out.logits[:, -1, :].float(), [rows[i].request for i in active])
            chunks = [
                c for i, t in zip(active, next_ids.tolist(), strict=True) if (c := self._push(i, rows[i], t))
            ]
            if chunks:
                yield chunks
            keep = [b for b, i in enumerate(active) if rows[i].finish_reason is None]
            if not keep:
                return
            if len(keep) < len(active):
                index = torch.tensor(keep)
                cache.batch_select_indices(index)
                if lora is not None:
                    lora.select(index)
                mask, positions, next_ids = mask[index], positions[index], next_ids[index]
                active = [active[b] for b in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
            positions = positions + 1
            out = self.model(
                input_ids=next_ids[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )

    def _pick(self, logits: torch.Tensor, requests: list[GenerationRequest]) -> torch.Tensor:
        picked = logits.argmax(dim=-1)
        for b, request in enumerate(requests):
            if request.temperature > 0:
                picked[b] = self._sample(logits[b], request.temperature, request.top_p)
        return picked

    def _sample(self, logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
        # Shifted so the best logit is 0 before dividing: a tiny (even subnormal) temperature then
        # gives -inf for the rest and 1 for the best, never inf/inf = NaN (found by the fuzz run).
        shifted = logits.float() - logits.float().max()
        probs = torch.softmax(shifted / temperature, dim=-1)
        if top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
            outside = sorted_probs.cumsum(-1) - sorted_probs >= top_p
            sorted_probs[outside] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=self._sampler)[0]

    def _push(self, index: int, row: _Row, token: int) -> Chunk | None:
        """Add one sampled token to ``row``; the chunk to send, if any."""
        row.tokens.append(token)
        request = row.request
        if token in self.eos_ids:
            row.finish_reason = "stop"
        # No clean-up of tokenization spaces: it rewrites earlier text (" ." -> "."), which
        # would make a streamed prefix disagree with the final text.
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        cut = min((p for p in (text.find(s) for s in request.stop) if p >= 0), default=-1)
        if cut >= 0:
            text, row.finish_reason = text[:cut], "stop"
        elif row.finish_reason is None and len(row.tokens) >= request.max_tokens:
            row.finish_reason = "length"
        if row.finish_reason is None:
            # Hold back a half-decoded character and anything that may yet become a stop string.
            text = text.rstrip(_INCOMPLETE_UTF8)
            text = text[: len(text) - _stop_prefix_length(text, request.stop)]
        delta = text[len(row.sent) :]
        if not delta and row.finish_reason is None:
            return None
        row.sent += delta
        return Chunk(index, delta, row.prompt_tokens, len(row.tokens), row.finish_reason)


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that is the start of some stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every id that ends a sequence: Qwen's generation config lists both <|im_end|> and <|endoftext|>."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, model.config.eos_token_id, model.generation_config.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return frozenset(ids)
