"""The training recipe through its real entry point (``services.trainer.job``) on tiny-llama."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cumulus.artifacts import verify_dir
from cumulus.lora import lora_task_id
from cumulus.models import TINY_LLAMA, ensure_model
from services.trainer.job import EXIT_INTERRUPTED, RESULT, main
from services.trainer.recipe import LoraRecipe
from services.trainer.recipe_config import load_recipe_config
from tests.unit.trainer.conftest import SHARED_MODELS, ticket_records

# Losses of the first two steps of the tiny recipe (fp32, seed 1234) on the ticket dataset.
PINNED_LOSSES = [10.8404, 10.7388]


def _manifest(spec: Path) -> dict[str, Any]:
    result = json.loads((spec.parent / RESULT).read_text())
    assert result["status"] in ("READY", "REJECTED"), result
    adapter = Path(result["artifact_uri"].removeprefix("file://"))
    verify_dir(adapter)
    manifest: dict[str, Any] = json.loads((adapter / "manifest.json").read_text())
    return manifest


def test_two_steps_through_the_entry_point_match_the_pinned_losses(
    write_recipe: Callable[..., Path], job_spec: Callable[..., Path]
) -> None:
    spec = job_spec(write_recipe(train={"max_steps": 2}))
    assert main([str(spec)]) == 0
    manifest = _manifest(spec)
    assert manifest["loss_curve"]["train"] == pytest.approx(PINNED_LOSSES, abs=2e-3)
    assert manifest["metrics"]["steps"] == 2
    assert manifest["lora_task_id"] == lora_task_id("ad-test")
    assert manifest["offline_gate"]["examples"] == 4
    assert set(manifest["files"]) == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "trtllm/model.lora_config.npy",
        "trtllm/model.lora_weights.npy",
    }
    adapter = spec.parent.parent.parent / "artifacts" / "adapters" / "route-tickets" / "ad-test"
    weights = np.load(adapter / "trtllm" / "model.lora_weights.npy")
    config = np.load(adapter / "trtllm" / "model.lora_config.npy")
    # tiny-llama: 2 layers x 7 modules; hf_lora_convert's batch dimension of 1; FP16 weights.
    assert weights.dtype == np.float16 and weights.shape[:2] == (1, 14) and config.shape == (1, 14, 3)
    assert sorted(set(config[0, :, 0].tolist())) == [1, 2, 3, 4, 5, 6, 7] and set(config[0, :, 2]) == {4}


def test_resume_from_a_checkpoint_gives_the_same_loss_curve(
    write_recipe: Callable[..., Path], job_spec: Callable[..., Path]
) -> None:
    recipe = write_recipe()
    straight = job_spec(recipe, "ad-straight")
    assert main([str(straight)]) == 0

    resumed = job_spec(recipe, "ad-resumed")
    assert main([str(resumed), "--stop-after-steps", "2"]) == EXIT_INTERRUPTED
    assert (resumed.parent / "checkpoint" / "checkpoint.pt").is_file()
    assert not (resumed.parent / RESULT).exists()
    assert main([str(resumed)]) == 0

    expected, got = _manifest(straight)["loss_curve"], _manifest(resumed)["loss_curve"]
    assert len(got["train"]) == 4
    assert got["train"] == pytest.approx(expected["train"], abs=1e-5)
    assert [step for step, _ in got["holdout"]] == [2, 4]
    assert [loss for _, loss in got["holdout"]] == pytest.approx(
        [loss for _, loss in expected["holdout"]], abs=1e-5
    )


AUTO_SCHEDULE = {
    "epochs": "auto",
    "max_steps": 0,
    "eval_every": "auto",
    "checkpoint_every": "auto",
    "auto_evals": 3,
}


@pytest.mark.parametrize("count", [10, 200])
def test_setup_sizes_the_run_from_the_examples_it_will_train_on(
    write_recipe: Callable[..., Path], tmp_path: Path, count: int
) -> None:
    recipe = LoraRecipe(
        load_recipe_config(write_recipe(train=AUTO_SCHEDULE)),
        model_path=ensure_model(TINY_LLAMA, SHARED_MODELS),
        train_records=ticket_records(count),
        holdout_records=[],
        checkpoint_dir=tmp_path / "checkpoint",
    )
    recipe.setup()
    schedule, rows = recipe.schedule, len(recipe.train_rows)
    recipe.cleanup()
    # Under 100 examples seen at 3 epochs: 10 epochs (the cap) for 10 tickets, 3 for 200. Packing
    # puts several tickets in one row, so steps count rows, examples count tickets.
    assert (schedule.examples, schedule.epochs) == ((10, 10) if count == 10 else (200, 3))
    assert rows < count and schedule.total_steps == schedule.epochs * -(-rows // 2)
    assert schedule.examples_seen == count * schedule.epochs
    assert schedule.eval_every == schedule.checkpoint_every == -(-schedule.total_steps // 3)


def test_an_auto_schedule_evaluates_about_auto_evals_times(
    write_recipe: Callable[..., Path], job_spec: Callable[..., Path]
) -> None:
    spec = job_spec(write_recipe(train=AUTO_SCHEDULE))
    assert main([str(spec)]) == 0
    manifest = _manifest(spec)
    steps, curve = manifest["metrics"]["total_steps"], manifest["loss_curve"]
    every = -(-steps // 3)
    assert steps % 3 == 0 and len(curve["train"]) == steps  # 40 tickets: 3 epochs, 120 seen
    assert [step for step, _ in curve["holdout"]] == sorted({*range(every, steps + 1, every), steps})


def test_a_job_whose_adapter_is_registered_only_reports_it(
    write_recipe: Callable[..., Path], job_spec: Callable[..., Path]
) -> None:
    spec = job_spec(write_recipe(train={"max_steps": 2}))
    assert main([str(spec)]) == 0
    first = json.loads((spec.parent / RESULT).read_text())
    (spec.parent / "checkpoint" / "checkpoint.pt").unlink()  # retraining would need it
    assert main([str(spec)]) == 0
    assert json.loads((spec.parent / RESULT).read_text()) == first


def test_a_failing_job_records_the_reason(
    write_recipe: Callable[..., Path], job_spec: Callable[..., Path], dataset_dir: Path
) -> None:
    spec = job_spec(write_recipe())
    (dataset_dir / "train.jsonl").write_text("{}\n")  # no longer what the manifest pinned
    assert main([str(spec)]) == 0
    result = json.loads((spec.parent / RESULT).read_text())
    assert result["status"] == "FAILED"
    assert "train.jsonl" in result["error"] and "does not match" in result["error"]
