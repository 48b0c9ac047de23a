"""Parameter counts of the served models and of an adapter, read from safetensors headers only.

Used for compute estimates (2 x parameters x tokens per forward pass): loading the weights is
not needed, the headers carry every tensor's shape.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from cumulus.config import CumulusConfig
from cumulus.lora.registry import PEFT_WEIGHTS, AdapterRegistry
from cumulus.models.store import ensure_model


def safetensors_parameters(path: Path) -> int:
    """Elements of every tensor in one .safetensors file (its JSON header, nothing else read)."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def folder_parameters(folder: Path) -> int:
    return sum(safetensors_parameters(p) for p in sorted(folder.glob("*.safetensors")))


def parameter_counts(config: CumulusConfig, adapter_id: str = "") -> dict[str, float]:
    """``{"live": n, "small": n, "lora": n}`` for the Triton models (and one registered adapter)."""
    models = Path(config.models_dir)
    counts: dict[str, float] = {
        "live": float(folder_parameters(ensure_model(config.triton.live_model, models))),
        "small": float(folder_parameters(ensure_model(config.triton.small_model, models))),
    }
    if adapter_id:
        record = AdapterRegistry(config.artifacts_dir).find(adapter_id)
        counts["lora"] = float(safetensors_parameters(record.path / PEFT_WEIGHTS))
    return counts
