"""Where the gateway gets an adapter's TensorRT-LLM tensors for the LoRA cache-miss resend.

An adapter's export lives in the artifact store (cumulus.artifacts) at
``adapters/<workflow>/<adapter_id>/``, in the layout cumulus.lora.registry writes and reads
(TensorRT-LLM's ``hf_lora_convert``), or in the adapter directory its RouteTarget's
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
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from cumulus.artifacts import ArtifactStore
from cumulus.errors import ArtifactError, NotFound
from cumulus.lora.registry import read_trtllm_export
from cumulus.v1 import common_pb2

_KEEP = 8


@dataclass(frozen=True)
class AdapterTensors:
    """What a cache-miss resend carries: FP16 ``[1, rows, width]`` weights, INT32 ``[1, rows, 3]`` config."""

    weights: npt.NDArray[Any]
    config: npt.NDArray[Any]


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
    """Verify an adapter directory against its manifest, then read and shape-check its export.

    NotFound when the adapter does not exist; ArtifactError when it fails verification.
    """
    if not folder.is_dir():
        raise NotFound(f"adapter not found at {folder}", fix="train and register it first")
    weights, config, _ = read_trtllm_export(folder)
    weights = _with_batch_dim(weights).astype(np.float16, copy=False)
    config = _with_batch_dim(config).astype(np.int32, copy=False)
    if weights.ndim != 3 or config.ndim != 3 or config.shape[2] != 3 or weights.shape[1] != config.shape[1]:
        raise ArtifactError(
            f"adapter export in {folder} has weights {weights.shape} and config {config.shape}; "
            "expected [1, rows, width] and [1, rows, 3]"
        )
    return AdapterTensors(weights=weights, config=config)


def _with_batch_dim(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return array[np.newaxis, ...] if array.ndim == 2 else array
