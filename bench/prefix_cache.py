"""Prefix caching in the CPU engine: the demo's tool-calling traffic with and without it, side by side.

The same requests (the demo app's system prompt, one of its tool schemas, a BFCL question) go
through one GenerationEngine in batches, as the Triton host batches them: once with a cache that
keeps nothing, once with the default cache. Reports requests/s of both, their ratio, the share of
prompt tokens served from the cache, and how many greedy outputs are identical (bf16 rounding may
differ between a batched and a cached prefill; fp32 gives identical tokens, see
tests/unit/engine/test_prefix.py). The last line is one JSON object::

    .venv/bin/python bench/prefix_cache.py                 # Qwen2.5-Coder-0.5B, 90 requests
    .venv/bin/python bench/prefix_cache.py --quick         # SmolLM2-135M, 45 requests
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--requests", type=int, default=90)
    parser.add_argument("--batch", type=int, default=15)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--quick", action="store_true", help="SmolLM2-135M, 45 requests")
    args = parser.parse_args()
    if args.quick:
        args.model, args.requests = "smollm2-135m-instruct", 45

    from transformers.utils import logging as hf_logging

    from bench.multilora import tool_prompts
    from cumulus.config import load_config
    from cumulus.engine.backend import GenerationEngine, GenerationRequest
    from cumulus.models import ensure_model, load_causal_lm

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model, tokenizer = load_causal_lm(ensure_model(args.model, load_config().models_dir), "bfloat16")
    prompts = tool_prompts(tokenizer, args.requests)
    batches = [prompts[i : i + args.batch] for i in range(0, len(prompts), args.batch)]

    def run(engine: GenerationEngine) -> tuple[float, list[str]]:
        texts: list[str] = []
        started = time.perf_counter()
        for batch in batches:
            texts += [c.text for c in engine.generate([GenerationRequest(p, args.max_tokens) for p in batch])]
        return time.perf_counter() - started, texts

    run(GenerationEngine(model, tokenizer, prefix_cache_bytes=0))  # warm-up: oneDNN kernels, allocator
    whole_s, whole_texts = run(GenerationEngine(model, tokenizer, prefix_cache_bytes=0))
    cached_engine = GenerationEngine(model, tokenizer)
    cached_s, cached_texts = run(cached_engine)
    prompt_tokens = sum(cached_engine.count_tokens(p) for p in prompts)
    result: dict[str, Any] = {
        "model": args.model,
        "requests": len(prompts),
        "batch": args.batch,
        "prompt_tokens_mean": round(prompt_tokens / len(prompts), 1),
        "whole_requests_per_s": round(len(prompts) / whole_s, 3),
        "cached_requests_per_s": round(len(prompts) / cached_s, 3),
        "speedup": round(whole_s / cached_s, 2),
        "cached_token_share": round(cached_engine.prefixes.hit_tokens / prompt_tokens, 3),
        "same_outputs": round(
            sum(a == b for a, b in zip(whole_texts, cached_texts, strict=True)) / len(prompts), 3
        ),
    }
    print(
        f"{args.model}: {len(prompts)} tool-calling requests in batches of {args.batch}, "
        f"~{result['prompt_tokens_mean']} prompt tokens each"
    )
    print(f"  whole prompts      {result['whole_requests_per_s']} requests/s")
    print(f"  prefix cache       {result['cached_requests_per_s']} requests/s ({result['speedup']}x)")
    print(f"  from the cache     {result['cached_token_share']:.1%} of prompt tokens")
    print(f"  identical outputs  {result['same_outputs']:.1%}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
