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

from cumulus.artifacts import MANIFEST, ArtifactStore, file_digest
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

    async def verify(self, target: common_pb2.RouteTarget, workflow: str) -> None:
        """Raise unless the store holds exactly the adapter ``target`` pins (``adapter_sha256``)."""

    async def load(self, target: common_pb2.RouteTarget, workflow: str) -> AdapterTensors: ...


def adapter_dir(store: ArtifactStore, target: common_pb2.RouteTarget, workflow: str) -> Path:
    """The artifact directory of ``target``'s adapter: its ``adapter_uri`` if set, else the store layout."""
    if target.adapter_uri:
        return store.path_from_uri(target.adapter_uri)
    return store.path("adapters", workflow, target.adapter_id)


class ArtifactAdapters:
    """AdapterSource reading verified exports from the local artifact store (LRU of ``_KEEP``).

    Every request on an adapter target first checks the route's pin against the store, cache hit
    in Triton or not: a manifest changed or swapped since the router pinned it is never served.
    The check costs one ``stat`` while the manifest is unchanged (its digest is kept per file
    identity), so it stays off the request's critical path."""

    def __init__(self, artifacts_dir: Path) -> None:
        self.store = ArtifactStore(artifacts_dir)
        self._cache: OrderedDict[tuple[Path, str], AdapterTensors] = OrderedDict()
        self._digests: dict[Path, tuple[tuple[int, int, int], str]] = {}

    async def verify(self, target: common_pb2.RouteTarget, workflow: str) -> None:
        folder = adapter_dir(self.store, target, workflow)
        if not target.adapter_sha256:
            raise ArtifactError(
                f"adapter {target.adapter_id} is not pinned: its route names no adapter_sha256 "
                "(route tables are made by the router from the trainer's adapter events)"
            )
        held = self._manifest_digest(folder / MANIFEST)
        if held is None:
            raise NotFound(
                f"adapter {target.adapter_id} not found at {folder}", fix="train and register it first"
            )
        if held != target.adapter_sha256:
            raise ArtifactError(
                f"adapter {target.adapter_id} at {folder} is not the one its route pins "
                f"(manifest sha256 {held[:12]}, pinned {target.adapter_sha256[:12]}); it is not served"
            )

    def _manifest_digest(self, manifest: Path) -> str | None:
        try:
            st = manifest.stat()
        except OSError:
            return None
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        known = self._digests.get(manifest)
        if known is None or known[0] != identity:
            known = (identity, file_digest(manifest).sha256)
            self._digests[manifest] = known
        return known[1]

    async def load(self, target: common_pb2.RouteTarget, workflow: str) -> AdapterTensors:
        folder = adapter_dir(self.store, target, workflow)
        await self.verify(target, workflow)
        key = (folder, target.adapter_sha256)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        tensors = await asyncio.to_thread(read_adapter_export, folder)
        # The files were read after the check: verify the manifest did not change in between.
        await self.verify(target, workflow)
        self._cache[key] = tensors
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
