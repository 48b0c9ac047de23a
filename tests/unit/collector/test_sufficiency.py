"""Data sufficiency: which workflows are label-shaped, what counts as gold, and the estimate's words."""

from __future__ import annotations

from services.collector.sufficiency import MAX_LABELS, estimate, gold_label, live_labels

ANSWERS = ["Billing", "tech.", " billing", "sales", "Tech", "refund"] * 10


def test_short_repeating_answers_are_label_shaped_and_normalised() -> None:
    labels = live_labels(ANSWERS)
    assert labels == {"billing": 20, "tech": 20, "sales": 10, "refund": 10}


def test_prose_json_tool_calls_and_ids_are_not_label_shaped() -> None:
    prose = ["The ticket is about billing.\nIt should go to the billing team."] * 20
    json_answers = ['{"team": "billing"}'] * 20
    calls = ['<tool_call>{"name": "route", "arguments": {}}</tool_call>'] * 20
    ids = [f"order-{i}" for i in range(20)]  # short, single line, but never repeats: no class
    for answers in (prose, json_answers, calls, ids, []):
        assert live_labels(answers) is None
    assert live_labels([f"l{i % (MAX_LABELS + 1)}" for i in range(10 * MAX_LABELS)]) is None


def test_a_few_stray_prose_answers_do_not_stop_a_label_workflow() -> None:
    stray = "I cannot tell which team this ticket is for without more detail about the account."
    answers = ["billing", "tech"] * 9 + [stray] * 2  # over 64 characters: prose, not a label
    assert live_labels(answers) == {"billing": 9, "tech": 9}
    assert live_labels(["billing", "tech"] * 3 + [stray] * 4) is None


def test_gold_is_a_correction_or_a_confirmation_of_live_never_a_refutation() -> None:
    assert gold_label("tech", None, "", "Billing!") == "billing"
    assert gold_label("Tech", 0.9, "", "") == "tech"
    assert gold_label("Tech", None, "good", "") == "tech"
    assert gold_label("tech", 0.1, "", "") is None  # live was wrong, but which label is right?
    assert gold_label("tech", None, "bad", "") is None
    assert gold_label("tech", None, "needs-review", "") is None  # a tag, not a judgement
    assert gold_label("tech", None, "", "  ") is None


def test_the_estimate_counts_labels_never_seen_in_gold_as_zero() -> None:
    gold = ["billing"] * 3 + ["sales"] * 2 + ["billing"] * 2
    found = estimate("acme", "route", ANSWERS, gold, target=8)
    assert found is not None
    assert (found.labelled, found.min_per_label, found.median_per_label) == (7, 2, 3.5)
    assert found.labels == {"refund": 0, "tech": 0, "sales": 2, "billing": 5}  # thinnest first
    assert found.unseen_labels == ["refund", "tech"]
    assert found.more_needed == 8 + 8 + 6 + 3
    assert found.advice.startswith("7 labelled examples over 2 of 4 labels (min 2, median 3.5 per label)")
    assert "needs ~25 more labelled examples for 8 per label" in found.advice
    assert found.advice.endswith(
        "thinnest: refund (never in gold), tech (never in gold), sales (2), billing (5)"
    )


def test_a_label_only_feedback_gave_joins_the_label_set() -> None:
    found = estimate("acme", "route", ["yes", "no"] * 10, ["maybe"] * 8 + ["yes"] * 8, target=8)
    assert found is not None
    assert found.labels == {"no": 0, "maybe": 8, "yes": 8} and found.unseen_labels == ["no"]
    assert found.more_needed == 8 and found.advice.endswith("thinnest: no (never in gold)")


def test_no_gold_yet_and_enough_gold_say_so() -> None:
    empty = estimate("acme", "route", ["yes", "no"] * 10, [], target=4)
    assert empty is not None and (empty.labelled, empty.min_per_label, empty.median_per_label) == (0, 0, 0.0)
    assert empty.advice.startswith("no labelled examples yet for its 2 labels; needs ~8 more")
    enough = estimate("acme", "route", ["yes", "no"] * 10, ["yes"] * 4 + ["no"] * 5, target=4)
    assert enough is not None and enough.more_needed == 0
    assert enough.advice.endswith("; enough for 4 per label")


def test_the_advice_names_at_most_five_labels() -> None:
    answers = [f"class{i}" for i in range(8)] * 5
    found = estimate("acme", "route", answers, ["class0"] * 8, target=2)
    assert found is not None and found.more_needed == 7 * 2
    assert found.advice.count("never in gold") == 5 and "class0" not in found.advice.split("thinnest")[1]


def test_a_workflow_that_is_not_label_shaped_has_no_estimate() -> None:
    assert estimate("acme", "route", ['{"team": "tech"}'] * 20, ["tech"] * 5, target=8) is None
