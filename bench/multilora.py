"""Multi-LoRA generation throughput: one batch mixing 8 adapters, vs one adapter, vs PEFT.

Three ways to generate for the same 8 prompts on SmolLM2-135M-Instruct (bf16, greedy, EOS ignored
so every row makes ``--max-tokens``):

- ``mixed``: our engine (services/inference), row i uses adapter i, one forward pass per step;
- ``single``: our engine, every row uses adapter 0 (``base``: no adapter, for reference);
- ``peft``: HF ``generate`` on a PEFT model holding the 8 adapters, ``adapter_names`` per row
  (PEFT runs each adapter's rows as a sub-batch, adapter after adapter).

The adapters are random rank-16 LoRAs on q/k/v/o/gate/up/down (B not zero, so deltas are real),
exported through the TensorRT-LLM layout exactly as the trainer registers them. The three are
run in alternation ``--rounds`` times and each keeps its median, so load from other processes on
a shared machine hits all of them alike. Last line: JSON with ``mixed_vs_single`` (target >= 0.8)
and ``mixed_vs_peft`` (target >= 5)::

    .venv/bin/python bench/multilora.py --quick
    .venv/bin/python bench/multilora.py --quick --prompts tools   # the demo's ~320-token prompts

``base_vs_peft`` (our engine with no adapter at all vs PEFT) is the ceiling of ``mixed_vs_peft``:
on CPU the base model's own matmuls dominate a decode step, so it bounds how far batching the
adapters can get ahead of PEFT's loop. Prompts are short chat questions by default, where decode
steps (and so the adapter mixing) dominate; with ``--prompts tools`` the prompt pass dominates on
CPU and every method converges to the base model's speed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: bench.* imports too

ADAPTERS = 8
RANK = 16
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens and rounds (about a minute)")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--models-dir", default=None, help="model cache (default: <state_dir>/models)")
    parser.add_argument("--rows-per-adapter", type=int, default=1, help="batch = 8 x this")
    parser.add_argument(
        "--prompts",
        choices=["chat", "tools"],
        default="chat",
        help="chat: short questions; tools: the demo's tool-calling requests (system prompt + schema)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    max_tokens = args.max_tokens or (24 if args.quick else 64)
    rounds = args.rounds or (5 if args.quick else 7)

    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers.utils import logging as hf_logging

    from cumulus.config import load_config
    from cumulus.engine.adapter_cache import AdapterCache
    from cumulus.engine.backend import GenerationEngine, GenerationRequest
    from cumulus.engine.multilora import MultiLora
    from cumulus.lora import peft_to_trtllm
    from cumulus.models import SMOLLM2, ensure_model, load_causal_lm

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if args.threads:  # on a machine shared with other work, 1 thread measures more steadily
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, tokenizer = load_causal_lm(ensure_model(SMOLLM2, args.models_dir or load_config().models_dir))
    served = copy.deepcopy(base)
    batch = ADAPTERS * args.rows_per_adapter
    prompts = chat_prompts(tokenizer, batch) if args.prompts == "chat" else tool_prompts(tokenizer, batch)

    config = LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS)
    peft_model = get_peft_model(base, config, adapter_name="a0")
    for i in range(1, ADAPTERS):
        peft_model.add_adapter(f"a{i}", config)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0.0, 0.02)
    peft_model.eval()

    cache = AdapterCache(
        MultiLora(served, slots=ADAPTERS + 1), model_id=SMOLLM2, registry=None, max_adapters=16
    )
    adapters = []
    for i in range(ADAPTERS):
        state = get_peft_model_state_dict(peft_model, adapter_name=f"a{i}")
        weights, lora_config = peft_to_trtllm(state, alpha=2 * RANK)
        adapters.append(cache.resolve(1000 + i, weights, lora_config))
    engine = GenerationEngine(served, tokenizer, adapters=cache)
    engine.eos_ids = frozenset()  # every row runs to max_tokens

    def ours(row_adapters: list[Any]) -> float:
        requests = [
            GenerationRequest(p, max_tokens, adapter=a) for p, a in zip(prompts, row_adapters, strict=True)
        ]
        started = time.perf_counter()
        tokens = sum(c.completion_tokens for c in engine.generate(requests))
        return tokens / (time.perf_counter() - started)

    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    names = [f"a{i % ADAPTERS}" for i in range(batch)]

    def peft() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            out = peft_model.generate(  # type: ignore[no-untyped-call]
                **encoded,
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                adapter_names=names,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = out.shape[0] * (out.shape[1] - encoded["input_ids"].shape[1])
        return float(new_tokens / (time.perf_counter() - started))

    runs: dict[str, Any] = {
        "base": lambda: ours([None] * batch),
        "mixed": lambda: ours([adapters[i % ADAPTERS] for i in range(batch)]),
        "single": lambda: ours([adapters[0]] * batch),
        "peft": peft,
    }
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: first-call allocations, slot loads
        run()
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].append(run())
            print(name, round(samples[name][-1], 1), "tokens/s", flush=True)
    tokens_per_s = {name: statistics.median(values) for name, values in samples.items()}
    print(
        json.dumps(
            {
                "model": SMOLLM2,
                "batch": batch,
                "adapters": ADAPTERS,
                "rank": RANK,
                "max_tokens": max_tokens,
                "prompts": args.prompts,
                "prompt_tokens": round(statistics.mean(len(tokenizer(p).input_ids) for p in prompts)),
                "rounds": rounds,
                "threads": torch.get_num_threads(),
                "tokens_per_s": {k: round(v, 1) for k, v in tokens_per_s.items()},
                "mixed_vs_single": round(tokens_per_s["mixed"] / tokens_per_s["single"], 3),
                "mixed_vs_peft": round(tokens_per_s["mixed"] / tokens_per_s["peft"], 2),
                # What mixed_vs_peft would be if adapters cost nothing: our engine on the bare base.
                "base_vs_peft": round(tokens_per_s["base"] / tokens_per_s["peft"], 2),
            },
            sort_keys=True,
        )
    )


def chat_prompts(tokenizer: Any, batch: int) -> list[str]:
    """Short chat questions (~30 prompt tokens)."""
    from bench.inference_throughput import QUESTIONS
    from cumulus.prompts import render_prompt

    questions = [QUESTIONS[i % len(QUESTIONS)] + " " * (i // len(QUESTIONS)) for i in range(batch)]
    return [render_prompt(tokenizer, [{"role": "user", "content": q}]).text for q in questions]


def tool_prompts(tokenizer: Any, batch: int) -> list[str]:
    """The demo workload's requests: its system prompt, one BFCL tool schema and the question."""
    from cumulus.prompts import render_prompt
    from ops.demo.bfcl import load_items
    from ops.demo.narrow import narrow_app
    from ops.demo.workloads.bfcl import request_for
    from services.gateway.rendering import chat_messages, chat_tools

    items, _ = narrow_app(load_items("simple_python"), tools=ADAPTERS, capture=batch, held_out=0)
    prompts = []
    for n, item in enumerate(items):
        request = request_for(item, f"bench-{n}")
        schemas = [json.loads(tool.parameters_json) for tool in request.tools]
        messages, tools = chat_messages(request.messages), chat_tools(request.tools, schemas)
        prompts.append(render_prompt(tokenizer, messages, tools).text)
    return prompts


if __name__ == "__main__":
    main()
