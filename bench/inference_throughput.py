"""Generation throughput of the CPU inference engine (cumulus/engine/backend.py).

Measures tokens/s per model and batch size, the way the Triton host runs them (one
GenerationEngine, greedy, bf16 by default, EOS ignored so every request makes ``--max-tokens``),
plus the model cache check (the one-time conversion on a fresh machine) and the load time.
The last line of output is one JSON object with every number, for scripts to pick up::

    .venv/bin/python bench/inference_throughput.py
    .venv/bin/python bench/inference_throughput.py --models smollm2-135m-instruct --batches 1 --max-tokens 16
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "What is the capital of France?",
    "Write a Python function that reverses a string.",
    "Explain what a hash map is in two sentences.",
    "List three uses of LoRA adapters.",
    "Translate 'good morning' into Spanish.",
    "What does HTTP status 404 mean?",
    "Give a SQL query counting rows per day.",
    "Summarise the plot of Hamlet in one line.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--models-dir", default=None, help="model cache (default: <state_dir>/models)")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from cumulus.config import load_config
    from cumulus.models import ensure_model, load_causal_lm
    from cumulus.prompts import render_prompt

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    models_dir = args.models_dir or load_config().models_dir
    results: dict[str, Any] = {
        "dtype": args.dtype,
        "max_tokens": args.max_tokens,
        "threads": torch.get_num_threads(),
    }
    for model_id in args.models:
        started = time.perf_counter()
        path = ensure_model(model_id, models_dir)
        ensure_s = time.perf_counter() - started
        started = time.perf_counter()
        model, tokenizer = load_causal_lm(path, args.dtype)
        load_s = time.perf_counter() - started
        prompts = [render_prompt(tokenizer, [{"role": "user", "content": q}]).text for q in QUESTIONS]
        entry: dict[str, Any] = {"ensure_s": round(ensure_s, 2), "load_s": round(load_s, 2)}
        engine = _engine(model, tokenizer)
        _run(engine, prompts[:1], 4)  # warm-up: first-call allocations and kernel selection
        for batch in args.batches:
            entry[f"batch_{batch}"] = _run(
                engine, [prompts[i % len(prompts)] for i in range(batch)], args.max_tokens
            )
            print(model_id, f"batch={batch}", entry[f"batch_{batch}"], flush=True)
        results[model_id] = entry
    print(json.dumps(results, sort_keys=True))


def _engine(model: Any, tokenizer: Any) -> Any:
    from cumulus.engine.backend import GenerationEngine

    engine = GenerationEngine(model, tokenizer)
    # No EOS: every request runs to max_tokens, so batch sizes and models compare like for like.
    engine.eos_ids = frozenset()
    return engine


def _run(engine: Any, prompts: list[str], max_tokens: int) -> dict[str, float]:
    """Generate for ``prompts`` as one batch; decode tokens/s counts every sampled token."""
    from cumulus.engine.backend import GenerationRequest

    requests = [GenerationRequest(p, max_tokens) for p in prompts]
    started = time.perf_counter()
    first_chunk_s = 0.0
    generated = 0
    for chunks in engine.stream(requests):
        first_chunk_s = first_chunk_s or time.perf_counter() - started
        generated += sum(c.completion_tokens for c in chunks if c.finish_reason)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "first_token_s": round(first_chunk_s, 3),
        "tokens": generated,
        "tokens_per_s": round(generated / seconds, 1),
    }


if __name__ == "__main__":
    main()
