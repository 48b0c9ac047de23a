"""A small ticket-routing dataset in an artifact store, tiny recipes, and job specs for the trainer tests."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cumulus.artifacts import ArtifactStore
from cumulus.models import TINY_LLAMA
from services.trainer.job import JobSpec

SHARED_MODELS = Path(__file__).resolve().parents[3] / ".cumulus" / "models"
WORKFLOW = "route-tickets"
TEAMS = {
    "billing": ["I was charged twice", "refund my card", "the invoice is wrong"],
    "shipping": ["my package is late", "where is my parcel", "no tracking number"],
    "account": ["reset my password", "I cannot log in", "change my email"],
}
TINY_RECIPE: dict[str, Any] = {
    "lora": {"rank": 4, "alpha": 8},
    "data": {"max_seq_len": 128},
    "optim": {"lr": 1.0e-2, "warmup_steps": 1},
    "train": {
        "batch_size": 2,
        "epochs": 1,
        "max_steps": 4,
        "eval_every": 2,
        "early_stopping_patience": 0,
        "checkpoint_every": 1,
    },
    # fp32 so pinned losses hold on any CPU (bf16 kernels differ between CPU generations).
    "precision": "fp32",
    "device": "cpu",
}


def ticket_records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        team = rng.choice(sorted(TEAMS))
        text = rng.choice(TEAMS[team])
        messages = [
            {"role": "system", "content": "Route the support ticket to a team."},
            {"role": "user", "content": f"Ticket {i}: {text}"},
            {"role": "assistant", "content": team},
        ]
        records.append({"messages": messages, "tools": [], "request_id": f"r{i}", "source": "live"})
    return records


def write_dataset(artifacts: Path, dataset_id: str) -> Path:
    """A committed dataset of 40 train and 8 holdout ticket examples; returns its directory."""
    store = ArtifactStore(artifacts)
    records = ticket_records(48)
    with store.create("datasets", WORKFLOW, dataset_id) as writer:
        writer.write_lines("train.jsonl", (json.dumps(r) for r in records[:40]))
        writer.write_lines("holdout.jsonl", (json.dumps(r) for r in records[40:]))
        writer.commit({"base_model": TINY_LLAMA, "tenant": "t-test"})
    return store.path("datasets", WORKFLOW, dataset_id)


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "artifacts", "ds-test")


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """``write_recipe(train={"max_steps": 2})``: the tiny recipe with overrides, as a YAML file."""

    def write(**sections: Any) -> Path:
        recipe = {
            k: {**v, **sections.pop(k, {})} if isinstance(v, dict) else v for k, v in TINY_RECIPE.items()
        }
        path = tmp_path / f"recipe-{len(list(tmp_path.glob('recipe-*')))}.yaml"
        path.write_text(yaml.safe_dump({**recipe, **sections}))
        return path

    return write


@pytest.fixture
def job_spec(tmp_path: Path, dataset_dir: Path) -> Callable[..., Path]:
    """``job_spec(recipe, name)``: a spec.json for a job training tiny-llama on the dataset."""

    def write(recipe: Path, name: str = "ad-test") -> Path:
        job_dir = tmp_path / "jobs" / name
        job_dir.mkdir(parents=True, exist_ok=True)
        spec = JobSpec(
            candidate_id=f"cand-{name}",
            adapter_id=name,
            tenant="t-test",
            workflow=WORKFLOW,
            dataset_id="ds-test",
            dataset_dir=str(dataset_dir),
            base_model=TINY_LLAMA,
            recipe=str(recipe),
            artifacts_dir=str(tmp_path / "artifacts"),
            models_dir=str(SHARED_MODELS),
            job_dir=str(job_dir),
            gate={"threshold": 0.5, "max_examples": 4, "max_new_tokens": 4, "dtype": "float32"},
        )
        spec.write(job_dir / "spec.json")
        return job_dir / "spec.json"

    return write
