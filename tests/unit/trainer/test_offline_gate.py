"""The offline gate's decision: gold where the holdout has enough of it, agreement with live otherwise."""

from __future__ import annotations

from cumulus.graders import GraderSettings
from services.trainer.data import HoldoutPrompt, holdout_prompts
from services.trainer.offline_gate import GateSettings, score_answers
from tests.unit.graders.fakes import WordEmbedder

SETTINGS = GateSettings(
    threshold=0.7,
    max_examples=100,
    max_new_tokens=8,
    graders=GraderSettings(workflow_graders={"route": "label"}),
    min_gold_rows=20,
    gold_margin=0.1,
)


def prompts(n: int, *, gold: bool) -> list[HoldoutPrompt]:
    """Live always answers "billing"; the right class (by the corrections) is "refunds" 80% of the time."""
    return [
        HoldoutPrompt(f"ticket {i}", "billing", [], ("refunds" if i % 5 else "billing") if gold else None)
        for i in range(n)
    ]


def test_an_adapter_that_learned_the_corrections_passes_on_gold_though_it_disagrees_with_live() -> None:
    rows = prompts(40, gold=True)
    result = score_answers(
        rows, [r.gold or "" for r in rows], workflow="route", settings=SETTINGS, embedder=WordEmbedder()
    )
    assert result.passed and result.gold["gate_test"] == 1.0
    assert result.gold["candidate_gold_accuracy"] == 1.0 and result.gold["live_gold_accuracy"] == 0.2
    assert result.score == 1.0 and result.agreement == 0.2 and result.gold["gold_rows"] == 40


def test_an_adapter_worse_than_live_on_gold_is_rejected() -> None:
    rows = [HoldoutPrompt(f"t{i}", "refunds", [], "refunds" if i % 5 else "billing") for i in range(40)]
    answers = ["billing"] * 40  # right only where live is wrong: 0.2 against live's 0.8
    result = score_answers(rows, answers, workflow="route", settings=SETTINGS, embedder=WordEmbedder())
    assert result.gold["candidate_gold_accuracy"] == 0.2 and result.gold["live_gold_accuracy"] == 0.8
    assert not result.passed and result.gold["gate_test"] == 1.0
    assert result.reason.startswith("gold accuracy 0.20 on 40 gold holdout rows, under live's 0.80")


def test_a_rejection_names_the_student_its_data_and_the_ladder() -> None:
    from services.trainer.job import _rejection

    fields = {
        "base_model": "smollm2-135m-instruct",
        "data": {"examples": 91},
        "student": {"cost_ratios": {"smollm2-135m-instruct": 30.2, "qwen2.5-coder-0.5b-instruct": 3.1}},
    }
    gate = {"passed": False, "reason": "gold accuracy 0.20 on 18 gold holdout rows, under live's 0.60"}
    why = _rejection(fields, gate)
    assert why.startswith("smollm2-135m-instruct trained on 91 examples: gold accuracy 0.20")
    assert "students (cost vs live): smollm2-135m-instruct 1/30.2, qwen2.5-coder-0.5b-instruct 1/3.1" in why
    assert _rejection(fields, {"passed": True}) == ""


def test_too_few_gold_rows_leave_the_decision_to_agreement_with_live() -> None:
    rows = prompts(30, gold=False) + prompts(5, gold=True)
    result = score_answers(
        rows, ["billing"] * 35, workflow="route", settings=SETTINGS, embedder=WordEmbedder()
    )
    assert result.gold["gate_test"] == 0.0 and result.gold["gold_rows"] == 5
    assert result.passed and result.score == 1.0 and result.reason == ""
    assert result.gold["live_gold_accuracy"] == 0.2  # still reported


def test_holdout_lines_carry_gold_and_what_live_said_instead() -> None:
    class Tokenizer:  # the renderer is not under test here
        pass

    records = [
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "refunds"}],
            "gold": "correction",
            "live_answer": "billing",
        },
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "billing"}],
            "gold": "confirmed",
        },
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "billing"}]},
    ]
    import services.trainer.data as data

    original = data.render
    data.render = lambda *_: "prompt"  # type: ignore[assignment]
    try:
        out = holdout_prompts(records, Tokenizer())
    finally:
        data.render = original  # type: ignore[assignment]
    assert [(p.live, p.gold) for p in out] == [
        ("billing", "refunds"),
        ("billing", "billing"),
        ("billing", None),
    ]
