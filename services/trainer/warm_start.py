"""Starting a workflow's next adapter version from the one it replaces (``trainer.warm_start``).

A retrained version learns the fresh traffic on top of what the promoted one already knew,
instead of from a random LoRA init: fewer steps to the same loss, and less to forget. Only an
adapter of the same shape can seed one: the same base model (the trainer checks it), rank and
target modules (checked here); anything else starts fresh and says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cumulus.logs import get_logger
from services.trainer.recipe_config import LoraSection

log = get_logger("trainer")


def warm_start(model: Any, folder: Path, lora: LoraSection) -> bool:
    """Load the PEFT adapter in ``folder`` into ``model``'s LoRA weights; False (logged) if it cannot."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    def skipped(reason: str) -> bool:
        log.warning("train.warm_start_skipped", adapter=str(folder), reason=reason)
        return False

    try:
        saved = json.loads((folder / "adapter_config.json").read_text())
        weights = load_file(folder / "adapter_model.safetensors", device="cpu")
    except (OSError, ValueError) as exc:
        return skipped(f"unreadable: {exc}")
    if saved.get("r") != lora.rank or sorted(saved.get("target_modules") or []) != sorted(lora.targets):
        return skipped(f"rank {saved.get('r')}, modules {saved.get('target_modules')}: not the recipe's")
    try:
        result: Any = set_peft_model_state_dict(model, weights)
    except RuntimeError as exc:  # a tensor of another size: another base model
        return skipped(f"its tensors do not fit the model: {str(exc)[:200]}")
    if result.unexpected_keys:
        return skipped(f"{len(result.unexpected_keys)} of its tensors have no place in the model")
    log.info("train.warm_started", adapter=str(folder), tensors=len(weights))
    return True
