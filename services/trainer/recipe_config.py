"""The training recipe's YAML config, and the checks that refuse bad combinations at start.

Shipped configs live in ``services/trainer/configs/``; ``trainer.recipe`` (cumulus.config) names
the one the service uses. Unknown keys are refused like everywhere else in the project, and
``RecipeConfig.resolve`` turns ``auto`` choices into concrete ones for the machine it runs on,
failing with a message that names the fix when the machine cannot do what the config asks;
``schedule.plan`` turns the ``auto`` epochs and cadences into numbers for the dataset it trains on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cumulus.engine.cpu import cpu_has_amx, cpu_supports_bf16
from cumulus.errors import ConfigError
from cumulus.lora.trtllm import SUPPORTED_TARGETS
from cumulus.prompts import PRUNABLE

CONFIGS_DIR = Path(__file__).parent / "configs"
DEFAULT_RECIPE = CONFIGS_DIR / "lora.yaml"
AUTO: Final = "auto"
"""The value of a field the recipe sizes from the dataset when it starts (services/trainer/schedule.py)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSection(_Section):
    rank: int = Field(default=16, ge=1, le=256)
    alpha: float = Field(default=32.0, gt=0)
    """Scale of the update is alpha / rank (alpha / sqrt(rank) with use_rslora)."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    targets: tuple[str, ...] = SUPPORTED_TARGETS
    """Decoder-layer projections to adapt; only those TensorRT-LLM's LoRA can serve."""
    use_rslora: bool = False


class DataSection(_Section):
    max_seq_len: int = Field(default=1024, ge=32)
    """Longest packed row (and longest example: longer ones are skipped, never cut)."""
    packing: bool = True
    """Pack several examples into one row (attention stays within each example)."""
    completion_only: bool = True
    """Loss on the answer tokens only; prompt tokens are masked."""
    prune: tuple[str, ...] = ()
    """Prompt parts left out of training examples (cumulus.prompts.PRUNABLE); the gateway must
    serve the adapter with the same pruning (recorded in the manifest)."""


class OptimSection(_Section):
    lr: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=10, ge=0)
    grad_clip: float = Field(default=1.0, ge=0)
    """Max gradient norm; 0 turns clipping off."""


class TrainSection(_Section):
    batch_size: int = Field(default=4, ge=1)
    """Rows (packed or not) per optimizer micro-step."""
    grad_accum: int = Field(default=1, ge=1)
    epochs: Annotated[int, Field(ge=1)] | Literal["auto"] = AUTO
    """auto: from the number of training examples, like OpenAI's ``n_epochs: auto`` (schedule.py):
    auto_base_epochs, raised or lowered so the examples seen land in [min_examples_seen,
    max_examples_seen], within 1..max_auto_epochs."""
    max_steps: int = Field(default=0, ge=0)
    """Optimizer steps at most; 0: as many as the epochs take."""
    eval_every: Annotated[int, Field(ge=0)] | Literal["auto"] = AUTO
    """Holdout loss every this many steps (and at the end); 0: never; auto: ~auto_evals times a run."""
    early_stopping_patience: int = Field(default=3, ge=0)
    """Stop after this many evaluations without a better holdout loss; 0: never stop early."""
    min_delta: float = Field(default=0.0, ge=0)
    """A holdout loss must beat the best by more than this to count as better."""
    checkpoint_every: Annotated[int, Field(ge=0)] | Literal["auto"] = AUTO
    """Save a resumable checkpoint every this many steps; 0: only when interrupted; auto: ~auto_evals
    times a run."""
    seed: int = 1234
    auto_base_epochs: int = Field(default=3, ge=1)
    """epochs: auto starts from this many (OpenAI's default too)."""
    min_examples_seen: int = Field(default=100, ge=1)
    """epochs: auto trains a small dataset for more epochs until it has seen this many examples."""
    max_examples_seen: int = Field(default=25_000, ge=1)
    """epochs: auto trains a large dataset for fewer epochs to see at most this many (one epoch at least)."""
    max_auto_epochs: int = Field(default=10, ge=1)
    """Most epochs auto picks: a tiny dataset is memorised long before min_examples_seen."""
    auto_evals: int = Field(default=10, ge=1)
    """Holdout evaluations (and checkpoints) over a run where eval_every (checkpoint_every) is auto."""


class RecipeConfig(_Section):
    """One training recipe: what ``LoraRecipe`` does, independent of which dataset it trains on."""

    lora: LoraSection = LoraSection()
    data: DataSection = DataSection()
    optim: OptimSection = OptimSection()
    train: TrainSection = TrainSection()
    precision: Literal["auto", "bf16", "fp32", "fp16"] = "auto"
    """auto: bf16 where it is faster (AMX CPUs, bf16 GPUs), else fp32; bf16 needs AVX512-BF16 or AMX."""
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _consistent(self) -> RecipeConfig:
        bad = sorted(set(self.lora.targets) - set(SUPPORTED_TARGETS))
        if bad or not self.lora.targets:
            raise ValueError(
                f"lora.targets {bad or '[]'}: TensorRT-LLM serves LoRA on {list(SUPPORTED_TARGETS)}"
            )
        if set(self.data.prune) - set(PRUNABLE):
            raise ValueError(f"data.prune may only name {list(PRUNABLE)}")
        if self.train.early_stopping_patience and not self.train.eval_every:
            raise ValueError(
                "train.early_stopping_patience needs a holdout loss: set train.eval_every > 0, "
                "or early_stopping_patience: 0"
            )
        self._schedule_consistent()
        if self.train.max_steps and self.optim.warmup_steps >= self.train.max_steps:
            raise ValueError(
                f"optim.warmup_steps ({self.optim.warmup_steps}) >= train.max_steps "
                f"({self.train.max_steps}): the learning rate would never reach optim.lr; lower warmup_steps"
            )
        return self

    def _schedule_consistent(self) -> None:
        train = self.train
        if train.min_examples_seen > train.max_examples_seen:
            raise ValueError(
                f"train.min_examples_seen ({train.min_examples_seen}) > train.max_examples_seen "
                f"({train.max_examples_seen}): no number of epochs fits both; lower min_examples_seen"
            )
        if train.auto_base_epochs > train.max_auto_epochs:
            raise ValueError(
                f"train.auto_base_epochs ({train.auto_base_epochs}) > train.max_auto_epochs "
                f"({train.max_auto_epochs}): raise max_auto_epochs or lower auto_base_epochs"
            )
        # The first evaluation always sets the best loss, so auto_evals of them allow at most
        # auto_evals - 1 without improvement: a patience that high could never stop the run.
        if train.eval_every == AUTO and train.early_stopping_patience >= train.auto_evals:
            raise ValueError(
                f"train.early_stopping_patience ({train.early_stopping_patience}) >= train.auto_evals "
                f"({train.auto_evals}): with eval_every: auto it could never stop early; "
                "raise auto_evals or lower early_stopping_patience"
            )

    def resolve(self) -> tuple[torch.device, torch.dtype | None]:
        """(device, autocast dtype or None for fp32) for this machine; ConfigError names the fix."""
        cuda = torch.cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise ConfigError("device: cuda but no CUDA device is visible", fix="set device: auto or cpu")
        device = torch.device("cuda" if self.device == "cuda" or (self.device == "auto" and cuda) else "cpu")
        bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_supports_bf16()
        bf16_faster = bf16 if device.type == "cuda" else cpu_has_amx()
        if self.precision == "fp16" and device.type == "cpu":
            raise ConfigError(
                "precision: fp16 is not supported for training on CPU",
                fix="use precision: bf16 (AVX512-BF16/AMX CPUs) or auto",
            )
        if self.precision == "fp16":
            raise ConfigError(
                "precision: fp16 needs loss scaling, which this recipe does not do",
                fix="use precision: bf16 (or auto)",
            )
        if self.precision == "bf16" and not bf16:
            raise ConfigError(
                f"precision: bf16 but this {device.type.upper()} has no bf16 support",
                fix="use precision: auto (falls back to fp32) or fp32",
            )
        if self.precision == "fp32" or (self.precision == "auto" and not bf16_faster):
            return device, None
        return device, torch.bfloat16


def load_recipe_config(path: Path | str | None = None) -> RecipeConfig:
    """Read and validate a recipe YAML (default: the shipped lora.yaml); ConfigError names file and field."""
    source = Path(path) if path else DEFAULT_RECIPE
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"recipe config {source} cannot be read: {exc}", fix="set trainer.recipe") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}", fix="fix the YAML syntax") from exc
    try:
        return RecipeConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: {problems}", fix="see services/trainer/recipe_config.py") from exc
