"""LoRA adapters shared by the trainer, the CPU backend and the CLI.

- :mod:`cumulus.lora.trtllm`: PEFT adapters <-> TensorRT-LLM's ``lora_weights``/``lora_config``.
- :mod:`cumulus.lora.registry`: the adapters in the artifact store, and ``lora_task_id``.

The conversion needs torch; the registry does not. The gateway reads adapters through the registry
and must not load torch, so the conversion's names are imported on first use.
"""

from typing import TYPE_CHECKING, Any

from cumulus.lora.registry import AdapterRecord, AdapterRegistry, lora_task_id, read_trtllm_export

if TYPE_CHECKING:
    from cumulus.lora.trtllm import (
        MODULE_IDS,
        SUPPORTED_TARGETS,
        ModuleLora,
        peft_to_trtllm,
        trtllm_to_modules,
    )

_CONVERSION = frozenset(
    {"MODULE_IDS", "SUPPORTED_TARGETS", "ModuleLora", "peft_to_trtllm", "trtllm_to_modules"}
)


def __getattr__(name: str) -> Any:
    if name in _CONVERSION:
        from cumulus.lora import trtllm

        return getattr(trtllm, name)
    raise AttributeError(f"module 'cumulus.lora' has no attribute {name!r}")


__all__ = [
    "MODULE_IDS",
    "SUPPORTED_TARGETS",
    "AdapterRecord",
    "AdapterRegistry",
    "ModuleLora",
    "lora_task_id",
    "peft_to_trtllm",
    "read_trtllm_export",
    "trtllm_to_modules",
]
