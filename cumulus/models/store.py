"""The local model cache: each catalog model converted once into a plain Hugging Face folder.

``ensure_model`` turns a GGUF file (or a seeded random init) into ``<models_dir>/<model_id>/``
with config, fp32 safetensors, tokenizer files and chat template, then writes a manifest last.
The folder is built under a temporary name and renamed into place, so a crash mid-conversion never
leaves a folder that looks usable; a file lock makes concurrent callers (service, trainer, tests)
convert once. Everything is offline: paths are local and ``local_files_only`` is always set.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cumulus.errors import NotReady
from cumulus.logs import get_logger
from cumulus.models.catalog import ModelSpec, get_spec
from cumulus.models.gemma_tokenizer import gemma_tokenizer

MANIFEST = "cumulus-model.json"
FORMAT_VERSION = 1
"""Bump when the conversion changes, so stale cached folders are rebuilt."""
TINY_SEED = 1234

log = get_logger("models")


def ensure_model(model_id: str, models_dir: str | Path) -> Path:
    """Return the HF folder of ``model_id`` under ``models_dir``, converting it the first time."""
    spec = get_spec(model_id)
    root = Path(models_dir).resolve()
    target = root / model_id
    if _is_complete(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{model_id}.lock"):
        if _is_complete(target):  # another process finished while we waited for the lock
            return target
        for stale in root.glob(f".{model_id}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{model_id}.tmp-{os.getpid()}"
        started = time.monotonic()
        try:
            tmp.mkdir()
            source = _convert(spec, tmp)
            _write_manifest(tmp, spec, source)
            if target.exists():  # an incomplete folder from an older, interrupted layout
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "model.converted", model=model_id, path=str(target), seconds=round(time.monotonic() - started, 1)
        )
    return target


def load_causal_lm(path: str | Path, dtype: str = "bfloat16") -> tuple[Any, Any]:
    """Load a folder made by ``ensure_model`` as (model in eval mode, left-padding tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    if not _is_complete(folder):
        raise NotReady(
            f"{folder} is not a converted model folder", fix="call ensure_model(model_id, models_dir)"
        )
    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, local_files_only=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    # Batched generation pads on the left so every row's next token sits in the last column.
    tokenizer.padding_side = "left"
    return model, tokenizer


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a converted folder: model id, source sha256 and the sha256 of every file."""
    manifest: dict[str, Any] = json.loads((Path(path) / MANIFEST).read_text())
    return manifest


def _is_complete(folder: Path) -> bool:
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError):
        return False
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("model_id") != folder.name:
        return False
    # Sizes, not hashes: cheap enough for every start, and enough to catch a truncated copy.
    return all(
        (folder / name).is_file() and (folder / name).stat().st_size == entry["size"]
        for name, entry in manifest["files"].items()
    )


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(spec: ModelSpec, out: Path) -> str:
    """Write the HF folder into ``out``; returns a description of the source for the manifest."""
    if spec.kind == "gguf":
        gguf_path = out / "_source.gguf"
        with gguf_path.open("wb") as handle:
            spec.write_gguf(handle)
        model = _load_gguf_model(gguf_path)
        tokenizer = _load_gguf_tokenizer(gguf_path, model.config)
        gguf_path.unlink()
        source = f"gguf sha256={spec.sha256}"
    else:
        donor = get_spec(spec.tokenizer_from)
        gguf_path = out / "_donor.gguf"
        with gguf_path.open("wb") as handle:
            donor.write_gguf(handle)
        tokenizer = _load_gguf_tokenizer(gguf_path, _gguf_config(gguf_path))
        gguf_path.unlink()
        model = _tiny_llama(tokenizer)
        source = f"random init seed={TINY_SEED}, tokenizer of {donor.model_id}"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return source


def _gguf_config(gguf_path: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True)


def _load_gguf_model(gguf_path: Path) -> Any:
    from transformers import AutoModelForCausalLM, GgufConfig

    model: Any = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        gguf_file=gguf_path.name,
        # Dense fp32 weights (the exact dequantized values), not GGUF blocks kept for a matmul kernel.
        quantization_config=GgufConfig(gguf_file=gguf_path.name, dequantize=True),
        local_files_only=True,
    )
    # A GGUF-loaded model refuses save_pretrained while it carries the quantizer; after a full
    # dequantize it is an ordinary dense model, so dropping the marker is exact.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def _load_gguf_tokenizer(gguf_path: Path, config: Any) -> Any:
    from transformers import AutoTokenizer

    if config.model_type == "gemma3_text":  # transformers drops a Gemma GGUF's merges
        return gemma_tokenizer(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True
    )
    # transformers' GGUF tokenizer mislabels special tokens (SmolLM2 comes back with
    # eos=<|im_start|>, Qwen with eos=<|endoftext|>); the model config read from the same
    # file has the ids the model was trained to emit, so those win.
    for role in ("bos", "eos", "pad"):
        token_id = getattr(config, f"{role}_token_id", None)
        if isinstance(token_id, int):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    # The GGUF asks for WordPiece-style space clean-up, which corrupts byte-level BPE text
    # (transformers ignores it with a warning on every decode).
    tokenizer.clean_up_tokenization_spaces = False
    return tokenizer


def _tiny_llama(tokenizer: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    model_class: Any = LlamaForCausalLM  # untyped constructor

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():  # a fixed model without disturbing the caller's RNG
        torch.manual_seed(TINY_SEED)
        return model_class(config).eval()


def _write_manifest(folder: Path, spec: ModelSpec, source: str) -> None:
    files = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(8 * 1024 * 1024):
                digest.update(block)
        files[path.name] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_id": spec.model_id,
        "source": source,
        "weights_dtype": "float32",
        "files": files,
    }
    # Written last: its presence is what marks the folder complete.
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
