"""LoRA adapters shared by the trainer, the CPU backend and the CLI.

- :mod:`cumulus.lora.trtllm`: PEFT adapters <-> TensorRT-LLM's ``lora_weights``/``lora_config``.
- :mod:`cumulus.lora.registry`: the adapters in the artifact store, and ``lora_task_id``.
"""

from cumulus.lora.registry import AdapterRecord, AdapterRegistry, lora_task_id, read_trtllm_export
from cumulus.lora.trtllm import MODULE_IDS, SUPPORTED_TARGETS, ModuleLora, peft_to_trtllm, trtllm_to_modules

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
