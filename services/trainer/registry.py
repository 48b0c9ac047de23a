"""Registering a trained adapter: the artifact-store entry the router, gateway and Triton read.

``adapters/<workflow>/<adapter_id>/`` gets the PEFT adapter, its TensorRT-LLM export
(``trtllm/model.lora_weights.npy`` FP16 ``[1, rows, width]`` and ``trtllm/model.lora_config.npy``
INT32 ``[1, rows, 3]``, see cumulus.lora.trtllm) and a manifest with the sha256 of every file and
the fields below. The directory appears whole or not at all (cumulus.artifacts), so an adapter id
that exists is a finished registration: a retried job finds it and only re-announces it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.torch import load_file

from cumulus.artifacts import ArtifactStore, Manifest
from cumulus.lora import lora_task_id, peft_to_trtllm
from cumulus.lora.registry import PEFT_CONFIG, PEFT_WEIGHTS, TRTLLM_CONFIG, TRTLLM_WEIGHTS
from cumulus.lora.trtllm import MODULE_IDS


def adapter_id_for(candidate_id: str, nominated_at: dt.datetime) -> str:
    """``ad-YYYYmmdd-HHMMSS-xxxxxxxx``: sorts by nomination time, and the same for a redelivered candidate."""
    digest = hashlib.sha256(candidate_id.encode()).hexdigest()[:8]
    return f"ad-{nominated_at:%Y%m%d-%H%M%S}-{digest}"


def trtllm_export(
    peft_dir: Path, alpha: float, use_rslora: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The TensorRT-LLM tensors of a saved PEFT adapter (FP16 weights, scale folded into B)."""
    return peft_to_trtllm(load_file(str(peft_dir / PEFT_WEIGHTS)), alpha=alpha, use_rslora=use_rslora)


def register_adapter(
    store: ArtifactStore,
    *,
    workflow: str,
    adapter_id: str,
    peft_dir: Path,
    export: tuple[npt.NDArray[Any], npt.NDArray[Any]],
    fields: dict[str, Any],
) -> Manifest:
    """Write the adapter directory and its manifest atomically; returns the manifest."""
    weights, config = export
    with store.create("adapters", workflow, adapter_id) as writer:
        for name in (PEFT_WEIGHTS, PEFT_CONFIG):
            shutil.copyfile(peft_dir / name, writer.file(name))
        writer.write_bytes(TRTLLM_WEIGHTS, _npy(weights))
        writer.write_bytes(TRTLLM_CONFIG, _npy(config))
        return writer.commit(
            {
                "lora_task_id": lora_task_id(adapter_id),
                "trtllm": {
                    "layout": "hf_lora_convert",
                    "weights_dtype": str(weights.dtype),
                    "rows": int(config.shape[1]),
                    "module_ids": {m: i for m, i in MODULE_IDS.items() if i in set(config[0, :, 0].tolist())},
                },
                **fields,
            }
        )


def _npy(array: npt.NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
