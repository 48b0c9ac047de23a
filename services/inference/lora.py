"""The LoRA hook of the TensorRT-LLM request protocol (adapters themselves come later).

Protocol: a request names an adapter by ``lora_task_id``; the first time, it may send only the id,
and the backend answers with TensorRT-LLM's exact "not found in cache" error; the client then
resends with ``lora_weights`` + ``lora_config`` (TRT-LLM's ``hf_lora_convert`` layout) and the
backend caches the adapter under that id. As in TensorRT-LLM, any id present is looked up (0 too):
a request for the base model leaves ``lora_task_id`` out.
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from cumulus.errors import InvalidArgument, NotFound


class LoraTaskNotCached(NotFound):
    """TensorRT-LLM's cache-miss error; clients match its text to resend with weights."""

    def __init__(self, task_id: int) -> None:
        super().__init__(f"LoRA task {task_id} not found in cache. Please send LoRA weights with request")
        self.task_id = task_id


def resolve_adapter(
    task_id: int | None, weights: npt.NDArray[Any] | None, config: npt.NDArray[Any] | None
) -> None:
    """The adapter a request should run with; None is the base model.

    No adapter is cached yet, so every named task is a miss; requests that bring weights are
    refused until adapter loading lands here (LRU cache keyed by task id, PEFT conversion).
    """
    if task_id is None:
        return None
    if weights is None or config is None:
        raise LoraTaskNotCached(task_id)
    raise InvalidArgument(
        "lora_weights",
        "this CPU backend does not load LoRA adapters yet",
        fix="leave out lora_task_id, lora_weights and lora_config to use the base model",
    )
