"""The built-in PII detectors against bench/pii_corpus.py's labelled corpus (seed 0, 2,400 entities).

Every structured kind: recall >= 0.99 and precision >= 0.95 (a finding counts when it has the
label's kind and IoU >= 0.5 with it, see bench/redaction.py, which prints the same numbers with
every miss). The kinds found after a label (DOB, PASSPORT, NATIONAL_ID): recall >= 0.9. A failure
lists the first misses and false findings of its kind, with their context.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bench.pii_corpus import LABELLED, Sample, generate
from bench.redaction import KEY, score
from cumulus.privacy.detectors import STRUCTURED
from cumulus.privacy.redactor import Redactor

Scores = tuple[dict[str, dict[str, Any]], list[str]]


@pytest.fixture(scope="module")
def corpus() -> list[Sample]:
    return generate(seed=0)


@pytest.fixture(scope="module")
def scores(corpus: list[Sample]) -> Scores:
    return score(Redactor(key=KEY), corpus)


def _errors(scores: Scores, kind: str) -> list[str]:
    return [line for line in scores[1] if line.split()[1] == kind][:12]


def test_the_corpus_holds_enough_of_every_kind(corpus: list[Sample]) -> None:
    counts = Counter(kind for sample in corpus for kind, _, _ in sample.spans)
    assert sum(counts.values()) >= 2000
    assert all(counts[kind] >= 150 for kind in STRUCTURED), counts
    assert sum(not sample.spans for sample in corpus) >= 50  # messages with nothing to find


def test_the_corpus_is_seeded_and_its_byte_spans_cut_the_same_text(corpus: list[Sample]) -> None:
    assert generate(seed=0) == corpus
    assert generate(seed=1) != corpus
    for sample in corpus:
        data = sample.text.encode()
        for (kind, start, end), (_, byte_start, byte_end) in zip(
            sample.spans, sample.byte_spans(), strict=True
        ):
            assert data[byte_start:byte_end].decode() == sample.text[start:end], kind


def test_the_corpus_values_are_valid(corpus: list[Sample]) -> None:
    """Checked here without cumulus.privacy.checks, so a miss cannot come from an invalid value."""
    values = [(kind, sample.text[start:end]) for sample in corpus for kind, start, end in sample.spans]
    for kind, value in values:
        digits = "".join(ch for ch in value if ch.isdigit())
        if kind == "CARD":
            doubled = [int(d) * (1 + i % 2) for i, d in enumerate(reversed(digits))]
            assert sum(d // 10 + d % 10 for d in doubled) % 10 == 0, value
        elif kind == "IBAN":
            compact = value.replace(" ", "")
            assert int("".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])) % 97 == 1, value
        elif kind == "SSN":
            assert len(digits) == 9 and digits[:3] not in ("000", "666") and digits[0] != "9", value
            assert digits[3:5] != "00" and digits[5:] != "0000", value


@pytest.mark.parametrize("kind", STRUCTURED)
def test_structured_kinds_reach_recall_099_and_precision_095(scores: Scores, kind: str) -> None:
    row = scores[0][kind]
    assert row["recall"] >= 0.99, (row, _errors(scores, kind))
    assert row["precision"] >= 0.95, (row, _errors(scores, kind))


@pytest.mark.parametrize("kind", LABELLED)
def test_labelled_kinds_reach_recall_09(scores: Scores, kind: str) -> None:
    row = scores[0][kind]
    assert row["recall"] >= 0.9, (row, _errors(scores, kind))
