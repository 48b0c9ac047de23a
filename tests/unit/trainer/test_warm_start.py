"""A workflow's next version starts from the adapter it replaces, where that adapter has the recipe's
shape; otherwise it starts fresh and says why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from cumulus.models import TINY_LLAMA, ensure_model
from services.trainer.recipe import LoraRecipe
from services.trainer.recipe_config import load_recipe_config
from tests.unit.trainer.conftest import SHARED_MODELS, ticket_records


def recipe(config: Path, tmp_path: Path, init: Path | None = None) -> LoraRecipe:
    built = LoraRecipe(
        load_recipe_config(config),
        model_path=ensure_model(TINY_LLAMA, SHARED_MODELS),
        train_records=ticket_records(10),
        holdout_records=[],
        checkpoint_dir=tmp_path / "checkpoint",
        init_adapter=init,
    )
    built.setup()
    return built


def saved_v1(write_recipe: Callable[..., Path], tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A 'v1' adapter whose LoRA weights are far from any fresh init, saved as the trainer saves it."""
    v1 = recipe(write_recipe(), tmp_path / "v1")
    with torch.no_grad():
        for param in v1.trainable.values():
            param.fill_(0.125)
    weights = {name: p.detach().clone() for name, p in v1.trainable.items()}
    v1.save_adapter(tmp_path / "v1-adapter")
    v1.cleanup()
    return tmp_path / "v1-adapter", weights


def test_v2_starts_from_v1s_weights(write_recipe: Callable[..., Path], tmp_path: Path) -> None:
    folder, v1_weights = saved_v1(write_recipe, tmp_path)
    v2 = recipe(write_recipe(), tmp_path / "v2", init=folder)
    assert v2.warm_started
    assert v2.trainable.keys() == v1_weights.keys()
    assert all(torch.equal(v2.trainable[name], v1_weights[name]) for name in v1_weights)
    # It trains from there: the optimizer owns the loaded tensors, not copies.
    assert {id(p) for p in v2.trainable.values()} == {
        id(p) for g in v2.optimizer.param_groups for p in g["params"]
    }
    v2.cleanup()


def test_an_adapter_of_another_rank_does_not_seed_one(
    write_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    folder, _ = saved_v1(write_recipe, tmp_path)  # rank 4, the tiny recipe's
    other = recipe(write_recipe(lora={"rank": 8, "alpha": 16}), tmp_path / "v2", init=folder)
    assert not other.warm_started
    assert not any(torch.all(p == 0.125) for p in other.trainable.values())
    other.cleanup()


def test_a_missing_adapter_starts_fresh(write_recipe: Callable[..., Path], tmp_path: Path) -> None:
    fresh = recipe(write_recipe(), tmp_path / "v2", init=tmp_path / "gone")
    assert not fresh.warm_started
    fresh.cleanup()
