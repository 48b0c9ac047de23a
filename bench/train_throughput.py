"""Training throughput: our LoRA recipe vs a plain Hugging Face PEFT training loop, same model and data.

Both train the same LoRA (rank 16 on q/k/v/o/gate/up/down) of SmolLM2-135M-Instruct for one epoch
over the same chat examples (a system prompt, a question, an answer of a few dozen tokens), batch
size 4, AdamW, on this machine:

- ``ours``: services/trainer's ``LoraRecipe`` (bf16 where the CPU has it, packed rows,
  completion-only loss projected to the vocabulary only at answer positions);
- ``peft``: the loop a PEFT tutorial writes: fp32, each batch padded to its longest example,
  ``model(input_ids, attention_mask, labels)`` with the loss over every non-pad token.

tokens/s counts the examples' real (non-pad) tokens over the time spent in training steps (model
loading excluded). Last line: JSON with ``speedup_vs_peft`` (target >= 2)::

    .venv/bin/python bench/train_throughput.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RANK = 16
BATCH = 4
TOPICS = ["billing", "shipping", "returns", "accounts", "warranty", "delivery", "invoices", "passwords"]


def records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Chat examples with realistic spread: prompts of ~40-120 tokens, answers of ~10-60."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        topic = rng.choice(TOPICS)
        details = " ".join(rng.choice(TOPICS) for _ in range(rng.randint(5, 60)))
        answer = f"This is about {topic}. " + " ".join(rng.choice(TOPICS) for _ in range(rng.randint(5, 45)))
        messages = [
            {"role": "system", "content": "You are a support assistant. Answer briefly and name the team."},
            {"role": "user", "content": f"Ticket {i}: I need help with {topic}. Details: {details}"},
            {"role": "assistant", "content": answer},
        ]
        out.append({"messages": messages, "tools": []})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer examples (about two minutes)")
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--models-dir", default=None, help="model cache (default: <state_dir>/models)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    count = args.examples or (48 if args.quick else 160)

    import torch
    from transformers.utils import logging as hf_logging

    from cumulus.config import load_config
    from cumulus.models import SMOLLM2, ensure_model

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if args.threads:  # on a machine shared with other work, 1 thread measures more steadily
        torch.set_num_threads(args.threads)
    model_path = ensure_model(SMOLLM2, args.models_dir or load_config().models_dir)
    data = records(count)
    ours = run_ours(model_path, data)
    print("ours", ours, flush=True)
    peft = run_peft(model_path, data)
    print("peft", peft, flush=True)
    print(
        json.dumps(
            {
                "model": SMOLLM2,
                "examples": count,
                "batch_size": BATCH,
                "rank": RANK,
                "threads": torch.get_num_threads(),
                "ours": ours,
                "peft": peft,
                "speedup_vs_peft": round(ours["tokens_per_s"] / peft["tokens_per_s"], 2),
            },
            sort_keys=True,
        )
    )


def run_ours(model_path: Path, data: list[dict[str, Any]]) -> dict[str, Any]:
    from services.trainer.recipe import LoraRecipe
    from services.trainer.recipe_config import RecipeConfig

    config = RecipeConfig.model_validate(
        {
            "lora": {"rank": RANK, "alpha": 2 * RANK},
            "data": {"max_seq_len": 512},
            "optim": {"warmup_steps": 1},
            "train": {"batch_size": BATCH, "epochs": 1, "eval_every": 0, "early_stopping_patience": 0,
                      "checkpoint_every": 0},
        }
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as checkpoints:
        recipe = LoraRecipe(
            config,
            model_path=model_path,
            train_records=data,
            holdout_records=[],
            checkpoint_dir=Path(checkpoints),
        )
        recipe.setup()
        state = recipe.train()
        precision = str(recipe.amp_dtype or "fp32")
        recipe.cleanup()
    return {
        "tokens": state.tokens,
        "seconds": round(state.seconds, 2),
        "steps": state.step,
        "precision": precision,
        "tokens_per_s": round(state.tokens / state.seconds, 1),
    }


def run_peft(model_path: Path, data: list[dict[str, Any]]) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cumulus.prompts import render_prompt

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model: Any = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True)  # fp32
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=targets))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    texts = [
        render_prompt(tokenizer, r["messages"][:-1]).text + r["messages"][-1]["content"] + tokenizer.eos_token
        for r in data
    ]
    model.train()
    tokens, seconds = 0, 0.0
    for start in range(0, len(texts), BATCH):
        batch = tokenizer(texts[start : start + BATCH], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        began = time.perf_counter()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds += time.perf_counter() - began
        tokens += int(batch["attention_mask"].sum())
    return {
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "steps": -(-len(texts) // BATCH),
        "precision": "fp32",
        "tokens_per_s": round(tokens / seconds, 1),
    }


if __name__ == "__main__":
    main()
