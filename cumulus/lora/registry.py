"""The adapter registry: ``adapters/<workflow>/<adapter_id>/`` in the artifact store.

An adapter directory holds the PEFT adapter (``adapter_model.safetensors``,
``adapter_config.json``), its TensorRT-LLM export (``trtllm/model.lora_weights.npy`` and
``trtllm/model.lora_config.npy``, see :mod:`cumulus.lora.trtllm`) and ``manifest.json``
(:mod:`cumulus.artifacts`: the sha256 of every file, plus the trainer's fields: ``lora_task_id``,
``base_model``, ``dataset_id``, ``candidate_id``, ``status``, ``hyperparameters``, ``metrics``,
``offline_gate``). ``register_adapter`` writes one (the trainer, the demo's broken adapter);
listing reads manifests only; anything that serves an adapter verifies it first. The directory
appears whole or not at all (cumulus.artifacts), so an adapter id that exists is a finished
registration: a retried job finds it and only re-announces it.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cumulus.artifacts import MANIFEST, ArtifactStore, Manifest, verify_dir
from cumulus.errors import ArtifactError, NotFound

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
TRTLLM_DIR = "trtllm"
TRTLLM_WEIGHTS = f"{TRTLLM_DIR}/model.lora_weights.npy"
TRTLLM_CONFIG = f"{TRTLLM_DIR}/model.lora_config.npy"
_TASK_ID_BITS = 63


def lora_task_id(adapter_id: str) -> int:
    """The adapter's TensorRT-LLM ``lora_task_id``: stable, derived from its id alone.

    The first 8 bytes of sha256(adapter_id), cut to 63 bits so clients that hold it as a signed
    int64 agree; never 0, which means "no adapter" in a RouteTarget.
    """
    value = int.from_bytes(hashlib.sha256(adapter_id.encode()).digest()[:8], "big") >> (64 - _TASK_ID_BITS)
    return value or 1


@dataclass(frozen=True)
class AdapterRecord:
    """One registered adapter as its (unverified) manifest describes it."""

    path: Path
    manifest: Manifest

    @property
    def adapter_id(self) -> str:
        return self.manifest.id

    @property
    def workflow(self) -> str:
        return self.manifest.workflow

    def field(self, name: str, default: Any = None) -> Any:
        return self.manifest.fields.get(name, default)

    @property
    def lora_task_id(self) -> int:
        return int(self.field("lora_task_id") or lora_task_id(self.adapter_id))

    def summary(self) -> dict[str, Any]:
        """The one-line view `cumulus adapters list` prints."""
        gate = self.field("offline_gate") or {}
        return {
            "adapter_id": self.adapter_id,
            "workflow": self.workflow,
            "status": self.field("status", ""),
            "base_model": self.field("base_model", ""),
            "dataset_id": self.field("dataset_id", ""),
            "lora_task_id": self.lora_task_id,
            "offline_score": gate.get("score"),
            "gate_passed": gate.get("passed"),
            "created_at": self.manifest.created_at,
        }


class AdapterRegistry:
    """Reads the adapters of an artifact store (see the module docstring)."""

    def __init__(self, artifacts_dir: Path) -> None:
        self.store = ArtifactStore(artifacts_dir)
        self._by_task_id: dict[int, Path] = {}

    @property
    def root(self) -> Path:
        return self.store.root / "adapters"

    def records(self) -> list[AdapterRecord]:
        """Every committed adapter, oldest first; directories without a readable manifest are skipped."""
        records = []
        for manifest_path in sorted(self.root.glob(f"*/*/{MANIFEST}")):
            if manifest_path.parent.name.startswith("."):
                continue  # a staging directory: not committed yet
            try:
                manifest = Manifest.from_json(json.loads(manifest_path.read_text()))
            except (OSError, ValueError, ArtifactError):
                continue
            records.append(AdapterRecord(manifest_path.parent, manifest))
        return sorted(records, key=lambda r: (r.manifest.created_at, r.adapter_id))

    def find(self, adapter_id: str) -> AdapterRecord:
        """The adapter with this id, in whichever workflow; NotFound names the command that lists them."""
        for record in self.records():
            if record.adapter_id == adapter_id:
                return record
        raise NotFound(f"no adapter {adapter_id!r} in {self.root}", fix="`cumulus adapters list` shows them")

    def path_for_task(self, task_id: int) -> Path | None:
        """The directory of the adapter whose ``lora_task_id`` is ``task_id``, if one is registered."""
        path = self._by_task_id.get(task_id)
        if path is None or not path.is_dir():
            self._by_task_id = {r.lora_task_id: r.path for r in self.records()}
            path = self._by_task_id.get(task_id)
        return path


def read_trtllm_export(path: Path) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.generic], Manifest]:
    """Verify an adapter directory against its manifest (sha256 of every file), then read ``trtllm/``.

    ArtifactError (naming the file) when anything was modified, truncated or is missing.
    """
    manifest = verify_dir(path)
    for name in (TRTLLM_WEIGHTS, TRTLLM_CONFIG):
        if name not in manifest.files:
            raise ArtifactError(f"adapter {path} has no {name}", fix="train or export the adapter again")
    try:
        weights = np.load(path / TRTLLM_WEIGHTS, allow_pickle=False)
        config = np.load(path / TRTLLM_CONFIG, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"adapter {path}: unreadable TensorRT-LLM export: {exc}") from exc
    return weights, config, manifest


def trtllm_export(
    peft_dir: Path, alpha: float, use_rslora: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The TensorRT-LLM tensors of a saved PEFT adapter (FP16 weights, scale folded into B)."""
    # torch only here and in register_adapter: the gateway reads exports and must not load it.
    from safetensors.torch import load_file

    from cumulus.lora.trtllm import peft_to_trtllm

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
    """Write ``adapters/<workflow>/<adapter_id>/`` and its manifest atomically; returns the manifest.

    The directory gets the PEFT files from ``peft_dir``, the TensorRT-LLM ``export`` (FP16
    ``[1, rows, width]`` weights and INT32 ``[1, rows, 3]`` config) and a manifest with the sha256
    of every file, the adapter's ``lora_task_id``, the export's layout, and ``fields``.
    """
    from cumulus.lora.trtllm import MODULE_IDS

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
