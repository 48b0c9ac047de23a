"""The ``label`` and ``json`` graders on hand-written cases, the tricky ones included."""

from __future__ import annotations

import pytest

from cumulus.graders import GradeCase, JsonGrader, LabelGrader, UngradablePair, flatten


@pytest.mark.parametrize(
    ("live", "candidate", "passed"),
    [
        ("billing", "billing", True),
        ("Billing", "  billing. ", True),
        ("REFUND_REQUEST", "refund_request", True),
        ("yes", "Yes!", True),
        ("New   York", "new york", True),
        ("billing", "shipping", False),
        ("yes", "no", False),
        ("billing", "billing issue", False),
        ("", "anything", False),
    ],
)
def test_label_is_normalised_exact_match(live: str, candidate: str, passed: bool) -> None:
    grade = LabelGrader().grade(GradeCase(live=live, candidate=candidate))
    assert grade.passed is passed
    assert grade.score == (1.0 if passed else 0.0)


def test_flatten_names_every_leaf_by_path() -> None:
    assert flatten({"a": {"b": [1, {"c": None}]}, "d": [], "e": {}}) == {
        "a.b[0]": 1,
        "a.b[1].c": None,
        "d": [],
        "e": {},
    }


def _json(live: str, candidate: str, pass_f1: float = 1.0):  # type: ignore[no-untyped-def]
    return JsonGrader(pass_f1).grade(GradeCase(live=live, candidate=candidate))


def test_reordered_keys_and_int_vs_float_are_the_same_json() -> None:
    grade = _json(
        '{"total": 1, "vendor": {"name": "ACME", "vat": "DE1"}}',
        '{"vendor": {"vat": "DE1", "name": "ACME"}, "total": 1.0}',
    )
    assert grade.passed and grade.score == 1.0
    assert grade.details["precision"] == grade.details["recall"] == 1.0


def test_whitespace_and_case_inside_strings_and_code_fences_do_not_count() -> None:
    grade = _json('{"city": "New York"}', '```json\n{ "city" : "new   york" }\n```')
    assert grade.passed


def test_a_wrong_nested_field_costs_one_field_not_the_whole_object() -> None:
    live = '{"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}'
    grade = _json(live, '{"a": 1, "b": {"c": 2, "d": 4}, "e": [1, 2]}')
    assert not grade.passed
    assert grade.details["wrong"] == ["b.d"]
    assert grade.score == pytest.approx(0.8)  # 4 of 5 fields right on both sides


def test_precision_and_recall_see_missing_and_extra_fields() -> None:
    grade = _json('{"a": 1, "b": 2}', '{"a": 1, "c": 3, "d": 4}', pass_f1=0.3)
    assert grade.details["precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert grade.details["recall"] == 0.5
    assert grade.details["missing"] == ["b"] and grade.details["extra"] == ["c", "d"]
    assert grade.passed  # F1 0.4 >= 0.3


def test_booleans_are_not_numbers_and_list_order_counts() -> None:
    assert not _json('{"flag": true}', '{"flag": 1}').passed
    assert not _json('{"ids": [1, 2]}', '{"ids": [2, 1]}').passed


def test_invalid_candidate_json_scores_zero() -> None:
    grade = _json('{"a": 1}', '{"a": 1,,}')
    assert (grade.score, grade.passed, grade.details["valid"]) == (0.0, False, False)


def test_live_output_that_is_not_json_cannot_be_graded_as_json() -> None:
    with pytest.raises(UngradablePair):
        _json("Sure, here it is", '{"a": 1}')
