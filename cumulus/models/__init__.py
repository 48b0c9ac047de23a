"""Offline base models: the catalog of model ids and the local cache of converted HF folders.

Typical use (service or trainer)::

    path = ensure_model("smollm2-135m-instruct", config.models_dir)   # converts once, then instant
    model, tokenizer = load_causal_lm(path, dtype="bfloat16")
"""

from cumulus.models.catalog import CATALOG, GEMMA3, QWEN_CODER, SMOLLM2, TINY_LLAMA, ModelSpec, get_spec
from cumulus.models.store import ensure_model, load_causal_lm, read_manifest

__all__ = [
    "CATALOG",
    "GEMMA3",
    "QWEN_CODER",
    "SMOLLM2",
    "TINY_LLAMA",
    "ModelSpec",
    "ensure_model",
    "get_spec",
    "load_causal_lm",
    "read_manifest",
]
