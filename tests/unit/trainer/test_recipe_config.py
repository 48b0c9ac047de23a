"""Recipe configs: every shipped one loads on this machine, bad combinations fail naming the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cumulus.errors import ConfigError
from services.trainer import recipe_config
from services.trainer.recipe_config import CONFIGS_DIR, RecipeConfig, load_recipe_config

SHIPPED = sorted(CONFIGS_DIR.glob("*.yaml"))


def test_configs_are_shipped() -> None:
    assert {p.name for p in SHIPPED} >= {"lora.yaml", "quick.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_resolves(path: Path) -> None:
    config = load_recipe_config(path)
    device, amp = config.resolve()
    assert device.type in ("cpu", "cuda")
    assert amp in (None, torch.bfloat16)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"train": {"early_stopping_patience": 3, "eval_every": 0}}, ["train.eval_every > 0"]),
        ({"train": {"max_steps": 5}, "optim": {"warmup_steps": 5}}, ["lower warmup_steps"]),
        ({"lora": {"targets": ["q_proj", "lm_head"]}}, ["lora.targets", "q_proj"]),
        ({"lora": {"rank": 0}}, ["lora.rank"]),
        ({"data": {"prune": ["everything"]}}, ["data.prune"]),
        ({"train": {"epoch": 3}}, ["train.epoch", "Extra inputs are not permitted"]),
        ({"train": {"epochs": "lots"}}, ["train.epochs", "'auto'"]),
        ({"train": {"epochs": 0}}, ["train.epochs", "greater than or equal to 1"]),
        ({"train": {"eval_every": -1}}, ["train.eval_every"]),
        (
            {"train": {"min_examples_seen": 500, "max_examples_seen": 400}},
            ["train.min_examples_seen (500) > train.max_examples_seen (400)", "lower min_examples_seen"],
        ),
        ({"train": {"auto_base_epochs": 12}}, ["train.auto_base_epochs (12) > train.max_auto_epochs (10)"]),
        (
            {"train": {"early_stopping_patience": 4, "auto_evals": 4}},
            ["train.early_stopping_patience (4) >= train.auto_evals (4)", "raise auto_evals"],
        ),
    ],
)
def test_bad_combinations_fail_at_load_naming_the_fix(
    tmp_path: Path, data: dict[str, Any], names: list[str]
) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_recipe_config(path)
    assert str(path) in str(caught.value)
    for name in names:
        assert name in str(caught.value)


def test_epochs_and_cadences_take_a_number_or_auto() -> None:
    explicit = RecipeConfig.model_validate(
        {"train": {"epochs": 2, "eval_every": 5, "checkpoint_every": 0, "early_stopping_patience": 9}}
    ).train
    assert (explicit.epochs, explicit.eval_every, explicit.checkpoint_every) == (2, 5, 0)
    auto = RecipeConfig().train
    assert (auto.epochs, auto.eval_every, auto.checkpoint_every) == ("auto", "auto", "auto")


def test_fp16_on_cpu_is_refused_naming_bf16() -> None:
    with pytest.raises(ConfigError, match=r"fp16 is not supported for training on CPU .*use precision: bf16"):
        RecipeConfig(precision="fp16", device="cpu").resolve()


def test_bf16_without_hardware_support_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipe_config, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(recipe_config, "cpu_has_amx", lambda: False)  # whatever this machine has
    with pytest.raises(ConfigError, match=r"no bf16 support .*use precision: auto"):
        RecipeConfig(precision="bf16", device="cpu").resolve()
    assert RecipeConfig(precision="auto", device="cpu").resolve() == (torch.device("cpu"), None)


def test_auto_precision_uses_bf16_where_the_cpu_has_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipe_config, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(recipe_config, "cpu_has_amx", lambda: True)
    assert RecipeConfig(device="cpu").resolve() == (torch.device("cpu"), torch.bfloat16)
    assert RecipeConfig(device="cpu", precision="fp32").resolve() == (torch.device("cpu"), None)


def test_auto_precision_stays_fp32_where_bf16_is_slower(monkeypatch: pytest.MonkeyPatch) -> None:
    """AVX512-BF16 without AMX: bf16 runs when asked for, but auto keeps the faster fp32."""
    monkeypatch.setattr(recipe_config, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(recipe_config, "cpu_has_amx", lambda: False)
    assert RecipeConfig(device="cpu").resolve() == (torch.device("cpu"), None)
    assert RecipeConfig(device="cpu", precision="bf16").resolve() == (torch.device("cpu"), torch.bfloat16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused() -> None:
    with pytest.raises(ConfigError, match="set device: auto or cpu"):
        RecipeConfig(device="cuda").resolve()
