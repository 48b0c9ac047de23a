"""Which adapter a request runs with: the LoRA side of the TensorRT-LLM request protocol.

A request names an adapter by ``lora_task_id``. ``AdapterCache.resolve`` answers, in order:

1. ``lora_weights`` + ``lora_config`` sent with the request (TensorRT-LLM's ``hf_lora_convert``
   layout): parsed, checked against the model's layers, and cached under the task id. A task id's
   weights never change: weights that differ (by sha256) from the ones cached under that id, or
   from the adapter the artifact store registers under it, are refused, so no sender can
   overwrite another tenant's adapter in the cache;
2. the task id is in the cache (least recently used adapters are evicted past ``max_adapters``);
3. an adapter registered in the artifact store has this ``lora_task_id``: its directory is
   verified against its manifest (sha256 of every file) and its ``trtllm/`` export loaded, so a
   tampered or truncated adapter is refused with an ArtifactError naming the file;
4. otherwise TensorRT-LLM's exact "not found in cache" error, on which clients (the gateway)
   resend with the weights.

As in TensorRT-LLM any id present is looked up (0 too): a request for the base model leaves
``lora_task_id`` out. Thread-safe: Triton's threads resolve while the engine thread generates.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

from cumulus.engine.multilora import LoraWeights, MultiLora
from cumulus.errors import InvalidArgument, NotFound
from cumulus.logs import get_logger
from cumulus.lora.registry import AdapterRegistry, read_trtllm_export
from cumulus.lora.trtllm import trtllm_to_modules

log = get_logger("inference")


class LoraTaskNotCached(NotFound):
    """TensorRT-LLM's cache-miss error; clients match its text to resend with weights."""

    def __init__(self, task_id: int) -> None:
        super().__init__(f"LoRA task {task_id} not found in cache. Please send LoRA weights with request")
        self.task_id = task_id


class AdapterCache:
    """Resolves task ids to parsed adapters for one model (see the module docstring)."""

    def __init__(
        self, lora: MultiLora, *, model_id: str, registry: AdapterRegistry | None, max_adapters: int
    ) -> None:
        self.lora = lora
        self.model_id = model_id
        self.registry = registry
        self.max_adapters = max_adapters
        self._cache: OrderedDict[int, LoraWeights] = OrderedDict()
        self._digests: dict[int, str] = {}
        """sha256 of the tensors each cached adapter was parsed from."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, task_id: int) -> bool:
        return task_id in self._cache

    def resolve(
        self, task_id: int | None, weights: npt.NDArray[Any] | None, config: npt.NDArray[Any] | None
    ) -> LoraWeights | None:
        """The adapter a request runs with; None is the base model."""
        if task_id is None:
            if weights is not None or config is not None:
                raise InvalidArgument("lora_task_id", "lora_weights/lora_config need a lora_task_id")
            return None
        if (weights is None) != (config is None):
            raise InvalidArgument("lora_weights", "send lora_weights and lora_config together")
        if weights is not None and config is not None:
            digest = tensors_digest(weights, config)
            self._check_sent(task_id, digest)
            with self._lock:
                if (cached := self._cache.get(task_id)) is not None:  # a resend: parsed already
                    self._cache.move_to_end(task_id)
                    return cached
            return self._put(self.parse(task_id, weights, config), digest)
        with self._lock:
            cached = self._cache.get(task_id)
            if cached is not None:
                self._cache.move_to_end(task_id)
                return cached
        return self._put(*self._from_registry(task_id))

    def parse(self, task_id: int, weights: npt.NDArray[Any], config: npt.NDArray[Any]) -> LoraWeights:
        """TensorRT-LLM tensors -> slot-ready fp32 weights, ``a [in, r]`` and ``b [r, out]``."""
        modules = trtllm_to_modules(weights, config, self.lora.dims, self.lora.num_layers)
        parsed = {(m.layer, m.module): (m.a.T.contiguous(), m.b.T.contiguous()) for m in modules}
        return LoraWeights(task_id, parsed, max(m.rank for m in modules))

    def _check_sent(self, task_id: int, digest: str) -> None:
        with self._lock:
            held = self._digests.get(task_id)
        path = self.registry.path_for_task(task_id) if held is None and self.registry else None
        if path is not None:
            held = tensors_digest(*read_trtllm_export(path)[:2])
        if held is not None and held != digest:
            log.warning("adapter.overwrite_refused", task_id=task_id)
            raise InvalidArgument(
                "lora_weights",
                f"LoRA task {task_id} is held with other weights; a task id's weights never change",
                fix="send the adapter's own weights, or register a new adapter (a new task id)",
            )

    def _from_registry(self, task_id: int) -> tuple[LoraWeights, str]:
        path = self.registry.path_for_task(task_id) if self.registry else None
        if path is None:
            raise LoraTaskNotCached(task_id)
        weights, config, manifest = read_trtllm_export(path)
        base = manifest.fields.get("base_model")
        if base != self.model_id:
            raise InvalidArgument(
                "lora_task_id",
                f"adapter {manifest.id} was trained on {base!r}; this model is {self.model_id!r}",
                fix="route the adapter to the model it was trained on",
            )
        adapter = self.parse(task_id, weights, config)
        log.info("adapter.loaded", adapter=manifest.id, workflow=manifest.workflow, task_id=task_id)
        return adapter, tensors_digest(weights, config)

    def _put(self, adapter: LoraWeights, digest: str) -> LoraWeights:
        with self._lock:
            self._cache[adapter.task_id] = adapter
            self._digests[adapter.task_id] = digest
            self._cache.move_to_end(adapter.task_id)
            while len(self._cache) > self.max_adapters:
                evicted, _ = self._cache.popitem(last=False)
                self._digests.pop(evicted, None)
                log.info("adapter.evicted", task_id=evicted, cached=len(self._cache))
        return adapter


def tensors_digest(weights: npt.NDArray[Any], config: npt.NDArray[Any]) -> str:
    """sha256 of an adapter's TensorRT-LLM tensors: dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for array in (weights, config):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def resolve_adapter(
    cache: AdapterCache | None,
    task_id: int | None,
    weights: npt.NDArray[Any] | None,
    config: npt.NDArray[Any] | None,
) -> LoraWeights | None:
    """``cache.resolve`` for a model that serves adapters; the refusals of one that does not."""
    if cache is not None:
        return cache.resolve(task_id, weights, config)
    if task_id is None:
        return None
    if weights is None or config is None:
        raise LoraTaskNotCached(task_id)
    raise InvalidArgument(
        "lora_weights",
        "this model serves no LoRA adapters",
        fix="send adapter requests to model small, or leave out the lora_* inputs",
    )
