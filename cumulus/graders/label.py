"""``label``: the candidate gives the same short answer as live (a class, a yes/no, an id).

Case, whitespace and punctuation do not count: ``"Billing."`` equals ``" billing"``.
"""

from __future__ import annotations

from cumulus.graders.base import CaseGrader, Grade, GradeCase
from cumulus.graders.normalize import normalise_label


class LabelGrader(CaseGrader):
    """Normalised exact match; score 1 or 0."""

    name = "label"

    def grade(self, case: GradeCase) -> Grade:
        live, candidate = normalise_label(case.live), normalise_label(case.candidate)
        same = live == candidate
        details = {"live": live[:200], "candidate": candidate[:200]} if not same else {"match": True}
        return Grade(self.name, 1.0 if same else 0.0, same, details)
