"""The ladder of students: the cost bound, the plateau rule, the history it reads, the length estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cumulus.artifacts import Manifest
from cumulus.config import CumulusConfig, StudentConfig, TrainerConfig
from cumulus.errors import ConfigError
from cumulus.lora.registry import AdapterRecord
from services.trainer.ladder import StudentPicker, Tried, choose, history, plateaued, token_share

LADDER = ("s-135m", "s-360m", "s-1b")
RATIOS = {"s-135m": 12.0, "s-360m": 5.0, "s-1b": 2.5}


def pick(tried: list[Tried], min_gain: float = 0.02) -> Any:
    return choose(LADDER, RATIOS, tried, min_cost_ratio=4.0, min_gain=min_gain)


def test_a_new_workflow_starts_on_the_smallest_student() -> None:
    choice = pick([])
    assert choice.model == "s-135m" and "1/12.0 of live" in choice.reason


def test_a_student_still_learning_is_trained_again() -> None:
    tried = [Tried("s-135m", 100, 0.40, False), Tried("s-135m", 200, 0.55, False)]
    assert pick(tried).model == "s-135m"


def test_a_plateau_below_the_gate_moves_up_one_rung() -> None:
    tried = [Tried("s-135m", 100, 0.40, False), Tried("s-135m", 200, 0.41, False)]
    choice = pick(tried)
    assert choice.model == "s-360m"
    assert "s-135m plateaued below the gate (0.40 on 100, 0.41 on 200 examples)" in choice.reason


def test_a_student_that_passed_is_not_plateaued_however_flat() -> None:
    assert not plateaued([Tried("m", 100, 0.9, True), Tried("m", 200, 0.9, True)], 0.02)
    assert not plateaued([Tried("m", 100, 0.1, False)], 0.02)  # one point is no curve


def test_students_over_the_cost_bound_are_never_trained() -> None:
    tried = [Tried(m, n, 0.3, False) for m in ("s-135m", "s-360m") for n in (100, 200)]
    choice = pick(tried)
    assert choice.model is None
    assert "s-1b costs 1/2.5 of live, over the 1/4 bound" in choice.reason
    assert "s-360m plateaued" in choice.reason and "larger student" in choice.reason


def test_no_student_at_all_under_the_bound_says_what_would_help() -> None:
    choice = choose(("big",), {"big": 1.5}, [], min_cost_ratio=4.0, min_gain=0.02)
    assert choice.model is None and "prune the prompt" in choice.reason


def record(tmp_path: Path, adapter_id: str, **fields: Any) -> AdapterRecord:
    workflow = fields.pop("workflow", "wf")
    manifest = Manifest(
        kind="adapter",
        workflow=workflow,
        id=adapter_id,
        created_at="2026-12-04T00:00:00Z",
        files={},
        fields=fields,
    )
    return AdapterRecord(tmp_path / adapter_id, manifest)


def test_history_reads_gated_adapters_of_the_workflow_and_tenant(tmp_path: Path) -> None:
    gold = {"gate_test": 1.0, "candidate_gold_accuracy": 0.7, "gate_agreement": 0.2}
    records = [
        record(tmp_path, "a1", tenant="t", base_model="s-135m", status="rejected", data={"examples": 90},
               metrics={"gate_agreement": 0.5}, offline_gate={"score": 0.5, "passed": False}),
        record(tmp_path, "a2", tenant="t", base_model="s-135m", status="ready", data={"examples": 180},
               metrics=gold, offline_gate={"score": 0.7, "passed": True}),
        record(tmp_path, "a3", tenant="t", base_model="s-135m", status="failed"),
        record(tmp_path, "a4", tenant="other", base_model="s-135m", status="rejected"),
        record(tmp_path, "a5", tenant="t", workflow="wf-2", base_model="s-135m", status="rejected"),
        # The demo's broken adapter, announced ready without a gate: no evidence about the student.
        record(tmp_path, "a6", tenant="t", base_model="s-135m", status="ready", forced_past_gate=True),
    ]  # fmt: skip
    assert history(records, "t", "wf") == [
        Tried("s-135m", 90, 0.5, False),
        Tried("s-135m", 180, 0.7, True),  # decided on gold: the gold accuracy is its score
    ]


@pytest.mark.parametrize(
    ("prune", "share"),
    [
        ((), 1.0),
        (("system",), (4 + 2 + 2) / (80 + 4 + 2 + 2)),
        (("system", "tools"), (4 + 2) / (80 + 4 + 2 + 2)),
    ],
)
def test_the_students_share_of_a_request_drops_what_its_recipe_prunes(
    prune: tuple[str, ...], share: float
) -> None:
    messages = [
        {"role": "system", "content": "s" * 80},
        {"role": "user", "content": "four"},
        {"role": "assistant", "content": "ok"},
    ]
    records = [{"messages": messages, "tools": []}]  # "[]" is the 2 characters of the tools
    assert token_share(records, prune) == pytest.approx(share)


def test_a_student_missing_from_the_catalog_fails_the_start() -> None:
    config = CumulusConfig(trainer=TrainerConfig(students=(StudentConfig(model="smollm9-1t"),)))
    with pytest.raises(ConfigError, match="smollm9-1t"):
        StudentPicker(config)
