"""Agreement with reviewers (accuracy, Cohen's kappa), position consistency, and the grade store."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulus.graders import cohens_kappa, human_verdict
from cumulus.graders.calibration import text_digest
from cumulus.graders.store import FeedbackRow, GradeRow, JudgeStore


def test_cohens_kappa_matches_the_textbook_example() -> None:
    # 50 items: both yes 20, both no 15, A yes/B no 5, A no/B yes 10 -> po 0.7, pe 0.5, kappa 0.4.
    pairs = [(True, True)] * 20 + [(False, False)] * 15 + [(True, False)] * 5 + [(False, True)] * 10
    assert cohens_kappa(pairs) == pytest.approx(0.4)
    assert cohens_kappa([(True, True), (False, False)]) == 1.0
    assert cohens_kappa([(True, True)] * 3) is None  # both raters said one thing only
    assert cohens_kappa([(True, True), (True, False)]) == 0.0  # always "pass" is chance level


def test_human_verdict_reads_score_then_label_then_correction() -> None:
    same = text_digest("Billing")
    assert human_verdict(0.9, "bad", "", "") is True
    assert human_verdict(0.2, "", "", "") is False
    assert human_verdict(None, " Good! ", "", "") is True
    assert human_verdict(None, "thumbs down", "", "") is False
    assert human_verdict(None, "", same, text_digest(" billing.")) is True
    assert human_verdict(None, "", same, text_digest("shipping")) is False
    assert human_verdict(None, "meh", "", "") is None


def _grade(n: int, grader: str, passed: bool, consistent: bool | None = None) -> GradeRow:
    return GradeRow(
        f"v{grader}{n}", f"p{n}", f"r{n}", "wf", "ad", grader, float(passed), passed, consistent, "d"
    )


def test_store_joins_grades_with_the_latest_feedback_and_flags_poor_graders(tmp_path: Path) -> None:
    store = JudgeStore(tmp_path / "judge.sqlite")
    reviews = [FeedbackRow(f"f{n}", f"r{n}", "wf", 1.0 if n % 2 else 0.0, "", "") for n in range(30)]
    good = [_grade(n, "label", bool(n % 2)) for n in range(30)]  # agrees with every review
    lazy = [_grade(n, "semantic", True) for n in range(30)]  # passes everything
    judged = [_grade(n, "pairwise", True, consistent=n < 27) for n in range(30)]
    store.record(good + lazy + judged, reviews)
    store.record(good[:3], [FeedbackRow("late", "r0", "wf", None, "comment only", "")])  # upserts, no dupes
    report = store.calibration(min_samples=20, min_kappa=0.4, min_consistency=0.95)
    by_name = {g.grader: g for g in report.graders}
    assert by_name["label"].reviewed == 29  # r0's latest feedback says nothing usable
    assert (by_name["label"].accuracy, by_name["label"].kappa, by_name["label"].flagged) == (1.0, 1.0, False)
    assert by_name["semantic"].kappa == 0.0 and by_name["semantic"].flagged
    assert "poor agreement" in by_name["semantic"].note
    assert report.judged_pairs == 30 and report.position_consistency == 0.9 and report.position_flagged
    assert (report.feedback_events, report.unusable_feedback) == (31, 1)
    assert store.counts() == {"grades": 90, "feedback": 31}
    store.close()


def test_too_few_reviews_are_reported_not_flagged(tmp_path: Path) -> None:
    store = JudgeStore(tmp_path / "judge.sqlite")
    store.record([_grade(1, "json", False)], [FeedbackRow("f1", "r1", "wf", None, "good", "")])
    (agreement,) = store.calibration(min_samples=20).graders
    assert agreement.reviewed == 1 and not agreement.flagged and "fewer than 20" in agreement.note
    store.close()
