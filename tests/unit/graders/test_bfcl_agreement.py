"""The ``tool_call`` grader agrees with BFCL's own checker and gold answers (bfcl-eval's possible_answer).

Every item of five BFCL categories (simple_python, multiple, parallel, live_simple, live_multiple),
its gold call as the live output, and candidates built from it (see bfcl_cases): correct ones
BFCL accepts and perturbed ones it rejects. Our verdict on (live, candidate) must match BFCL's
verdict on the candidate for >= 95% of them (``grader_vs_gold_agreement``).

``alternative_value`` candidates (another value BFCL's answer also accepts, e.g. "in" for
"inches") are reported but not asserted: the judge has only live's answer to compare with,
not BFCL's list of acceptable values, so it cannot know they are equivalent.
"""

from __future__ import annotations

from collections import Counter

import pytest

from cumulus.graders import GradeCase, ToolCallGrader
from tests.unit.graders.bfcl_cases import bfcl_verdict, cases

pytest.importorskip("bfcl_eval", reason="bfcl-eval is installed by scripts/setup.sh (model-assets.txt)")

ASSERTED_KINDS = (
    "same",
    "int_for_float",
    "default_omitted",
    "wrong_function",
    "wrong_value",
    "missing_required",
)


def _agreement() -> tuple[Counter[str], Counter[str], Counter[str]]:
    grader = ToolCallGrader()
    total: Counter[str] = Counter()
    agree: Counter[str] = Counter()
    gold_valid: Counter[str] = Counter()
    for case in cases():
        gold = bfcl_verdict(case.item, case.candidate_calls)
        ours = grader.grade(GradeCase(live=case.live, candidate=case.candidate, tools=case.tools)).passed
        total[case.kind] += 1
        agree[case.kind] += ours == gold
        gold_valid[case.kind] += gold
    return total, agree, gold_valid


def test_tool_call_grader_agrees_with_bfcl_gold_answers() -> None:
    total, agree, gold_valid = _agreement()
    for kind in sorted(total):
        rate = agree[kind] / total[kind]
        print(f"{kind:18} n={total[kind]:5} bfcl_valid={gold_valid[kind]:5} agreement={rate:.3f}")
    # The construction works: BFCL accepts the correct kinds and rejects the perturbed ones.
    assert gold_valid["same"] / total["same"] > 0.99
    assert gold_valid["wrong_function"] == gold_valid["wrong_value"] == 0
    n = sum(total[k] for k in ASSERTED_KINDS)
    rate = sum(agree[k] for k in ASSERTED_KINDS) / n
    everything = sum(agree.values()) / sum(total.values())
    print(f"grader_vs_gold_agreement={rate:.4f} over {n} candidates (all kinds: {everything:.4f})")
    assert n > 9000
    assert rate >= 0.95
    for kind in ("wrong_function", "wrong_value", "missing_required"):
        assert agree[kind] / total[kind] >= 0.99, kind  # a perturbed call must never pass
