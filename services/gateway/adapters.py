"""Where the gateway gets an adapter's TensorRT-LLM tensors for the LoRA cache-miss resend.

An adapter's export lives in the artifact store (cumulus.artifacts) at
``adapters/<workflow>/<adapter_id>/trtllm/{model.lora_weights.npy, model.lora_config.npy}``
(TensorRT-LLM's ``hf_lora_convert`` layout), or in the adapter directory its RouteTarget's
``adapter_uri`` (``file://``) points at. The gateway only needs them when Triton says the adapter
is not in its cache, so they are loaded lazily (in a thread), after the adapter directory is
verified against its manifest, and a few are kept in memory. ``AdapterSource`` is the seam tests
(and a remote store later) plug into.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from cumulus.artifacts import ArtifactStore, verify_dir
from cumulus.errors import ArtifactError, NotFound
from cumulus.v1 import common_pb2

TRTLLM_DIR = "trtllm"
WEIGHTS_FILE = "model.lora_weights.npy"
CONFIG_FILE = "model.lora_config.npy"
_KEEP = 8


@dataclass(frozen=True)
class AdapterTensors:
    """What a cache-miss resend carries: FP16 ``[1, rows, width]`` weights, INT32 ``[1, rows, 3]`` config."""

    weights: np.ndarray
    config: np.ndarray


class AdapterSource(Protocol):
    """Loads the tensors of the adapter a RouteTarget names."""

    async def load(self, target: common_pb2.RouteTarget, workflow: str) -> AdapterTensors: ...


def adapter_dir(store: ArtifactStore, target: common_pb2.RouteTarget, workflow: str) -> Path:
    """The artifact directory of ``target``'s adapter: its ``adapter_uri`` if set, else the store layout."""
    if target.adapter_uri:
        return store.path_from_uri(target.adapter_uri)
    return store.path("adapters", workflow, target.adapter_id)


class ArtifactAdapters:
    """AdapterSource reading verified exports from the local artifact store (LRU of ``_KEEP``)."""

    def __init__(self, artifacts_dir: Path) -> None:
        self.store = ArtifactStore(artifacts_dir)
        self._cache: OrderedDict[Path, AdapterTensors] = OrderedDict()

    async def load(self, target: common_pb2.RouteTarget, workflow: str) -> AdapterTensors:
        folder = adapter_dir(self.store, target, workflow)
        cached = self._cache.get(folder)
        if cached is not None:
            self._cache.move_to_end(folder)
            return cached
        tensors = await asyncio.to_thread(read_adapter_export, folder)
        self._cache[folder] = tensors
        while len(self._cache) > _KEEP:
            self._cache.popitem(last=False)
        return tensors


def read_adapter_export(folder: Path) -> AdapterTensors:
    """Verify an adapter directory against its manifest, then read and shape-check ``trtllm/``.

    NotFound when the adapter does not exist; ArtifactError when it fails verification.
    """
    if not folder.is_dir():
        raise NotFound(f"adapter not found at {folder}", fix="train and register it first")
    verify_dir(folder)
    weights_path, config_path = folder / TRTLLM_DIR / WEIGHTS_FILE, folder / TRTLLM_DIR / CONFIG_FILE
    if not weights_path.is_file() or not config_path.is_file():
        raise NotFound(f"adapter {folder} has no TensorRT-LLM export", fix="export it into trtllm/")
    weights = _with_batch_dim(np.load(weights_path)).astype(np.float16, copy=False)
    config = _with_batch_dim(np.load(config_path)).astype(np.int32, copy=False)
    if weights.ndim != 3 or config.ndim != 3 or config.shape[2] != 3 or weights.shape[1] != config.shape[1]:
        raise ArtifactError(
            f"adapter export in {folder} has weights {weights.shape} and config {config.shape}; "
            "expected [1, rows, width] and [1, rows, 3]"
        )
    return AdapterTensors(weights=weights, config=config)


def _with_batch_dim(array: np.ndarray) -> np.ndarray:
    return array[np.newaxis, ...] if array.ndim == 2 else array
