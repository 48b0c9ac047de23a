"""The counted parameters of the demo's models (cumulus.models.params has the counting rule)."""

from __future__ import annotations

from cumulus.config import CumulusConfig
from cumulus.lora.registry import PEFT_WEIGHTS, AdapterRegistry
from cumulus.models.params import lora_parameters, model_parameters


def parameter_counts(config: CumulusConfig, adapter_id: str = "") -> dict[str, float]:
    """``{"live": n, "small": n, "lora": n}`` for the Triton models (and one registered adapter).

    With an adapter, ``small`` is its own base (the student it was trained on).
    """
    base = config.triton.small_model
    record = AdapterRegistry(config.artifacts_dir).find(adapter_id) if adapter_id else None
    if record is not None:
        base = str(record.field("base_model") or base)
    counts: dict[str, float] = {
        "live": float(model_parameters(config.triton.live_model, config.models_dir)),
        "small": float(model_parameters(base, config.models_dir)),
    }
    if record is not None:
        counts["lora"] = float(lora_parameters(record.path / PEFT_WEIGHTS))
    return counts
