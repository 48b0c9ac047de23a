"""How far each grader can be trusted: its agreement with people, and the LLM judge's consistency.

Human feedback (the gateway's Feedback RPC -> cumulus.feedback.v1) on a shadowed request is read as
a review of that pair's candidate answer: reviewers see live and candidate side by side and say
whether the candidate's answer is acceptable. It becomes a pass/fail (:func:`human_verdict`): a
``score`` (>= 0.5 passes), else a recognised ``label`` (good/bad, yes/no...), else a
``correction`` (the candidate passes when it says the same as the correction, compared as
labels are). Agreement is accuracy and Cohen's kappa (agreement beyond chance: 0 = chance,
1 = perfect); a grader with at least ``min_samples`` reviews and kappa under ``min_kappa`` is
flagged. Position consistency is the share of pairwise gradings whose two orders agreed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cumulus.graders.normalize import normalise_label

POSITIVE_LABELS = frozenset(
    {
        "good",
        "correct",
        "right",
        "pass",
        "passed",
        "yes",
        "ok",
        "accept",
        "accepted",
        "thumbs up",
        "up",
        "1",
        "true",
    }
)
NEGATIVE_LABELS = frozenset(
    {
        "bad",
        "wrong",
        "incorrect",
        "fail",
        "failed",
        "no",
        "reject",
        "rejected",
        "thumbs down",
        "down",
        "0",
        "false",
    }
)


def text_digest(text: str) -> str:
    """A digest of ``text`` as labels compare it, so corrections match without storing answers."""
    return hashlib.sha256(normalise_label(text).encode("utf-8")).hexdigest()[:32]


def human_verdict(
    score: float | None, label: str, correction_digest: str, candidate_digest: str
) -> bool | None:
    """The reviewer's pass/fail of the candidate, or None when the feedback does not say."""
    if score is not None:
        return score >= 0.5
    normalised = normalise_label(label)
    if normalised in POSITIVE_LABELS:
        return True
    if normalised in NEGATIVE_LABELS:
        return False
    if correction_digest:
        return correction_digest == candidate_digest
    return None


def cohens_kappa(pairs: list[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two raters' pass/fail; None when it is undefined (both always said the same)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    a_yes = sum(a for a, _ in pairs) / n
    b_yes = sum(b for _, b in pairs) / n
    expected = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


@dataclass(frozen=True)
class GraderAgreement:
    grader: str
    reviewed: int
    """Graded pairs that have a usable human verdict."""
    accuracy: float | None
    kappa: float | None
    flagged: bool
    note: str = ""


@dataclass(frozen=True)
class CalibrationReport:
    graders: list[GraderAgreement]
    judged_pairs: int
    """Pairs the LLM judge graded (both orders)."""
    position_consistency: float | None
    position_flagged: bool
    feedback_events: int
    unusable_feedback: int
    """Feedback that says neither pass nor fail (a comment only, an unknown label)."""
    thresholds: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "graders": [vars(g) for g in self.graders],
            "llm_judge": {
                "judged_pairs": self.judged_pairs,
                "position_consistency": self.position_consistency,
                "flagged": self.position_flagged,
            },
            "feedback_events": self.feedback_events,
            "unusable_feedback": self.unusable_feedback,
            "thresholds": self.thresholds,
        }


def calibrate(
    reviewed: Iterable[tuple[str, bool, bool]],
    consistency: Iterable[bool],
    *,
    feedback_events: int = 0,
    unusable_feedback: int = 0,
    min_samples: int = 20,
    min_kappa: float = 0.4,
    min_consistency: float = 0.8,
) -> CalibrationReport:
    """Agreement per grader from ``(grader, grader_passed, human_passed)`` rows; the judge's consistency."""
    by_grader: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for grader, passed, human in reviewed:
        by_grader[grader].append((passed, human))
    graders = [_agreement(g, pairs, min_samples, min_kappa) for g, pairs in sorted(by_grader.items())]
    orders = list(consistency)
    rate = sum(orders) / len(orders) if orders else None
    return CalibrationReport(
        graders=graders,
        judged_pairs=len(orders),
        position_consistency=round(rate, 4) if rate is not None else None,
        position_flagged=rate is not None and len(orders) >= min_samples and rate < min_consistency,
        feedback_events=feedback_events,
        unusable_feedback=unusable_feedback,
        thresholds={"min_samples": min_samples, "min_kappa": min_kappa, "min_consistency": min_consistency},
    )


def _agreement(
    grader: str, pairs: list[tuple[bool, bool]], min_samples: int, min_kappa: float
) -> GraderAgreement:
    accuracy = sum(a == b for a, b in pairs) / len(pairs)
    kappa = cohens_kappa(pairs)
    if len(pairs) < min_samples:
        note, flagged = f"fewer than {min_samples} reviewed pairs: not judged yet", False
    elif kappa is None:
        note, flagged = "kappa undefined: grader and reviewers each gave one answer only", False
    elif kappa < min_kappa:
        note, flagged = f"poor agreement with reviewers (kappa {kappa:.2f} < {min_kappa})", True
    else:
        note, flagged = "", False
    rounded = round(kappa, 4) if kappa is not None else None
    return GraderAgreement(grader, len(pairs), round(accuracy, 4), rounded, flagged, note)
