"""Candidate rules: a qualifying workflow, each threshold failing on its own, busy workflows, retries."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from cumulus.config import DetectionConfig
from services.collector.detection import assess
from services.collector.insights import WorkflowStats
from services.collector.learning import Attempt

CFG = DetectionConfig(
    min_requests=100,
    min_template_stability=0.9,
    min_output_consistency=0.8,
    max_error_rate=0.05,
    min_daily_savings=1.0,
)
GOOD = WorkflowStats(
    tenant="acme",
    workflow="route-tickets",
    requests=500,
    errors=2,
    error_rate=0.004,
    prompt_tokens=75_000,
    completion_tokens=10_000,
    p50_ms=120.0,
    p95_ms=300.0,
    est_cost=0.29,
    est_daily_savings=4.2,
    live_ok=498,
    json_share=0.0,
    tool_call_share=0.97,
    output_consistency=0.97,
    distinct_outputs=3,
    template_stability=1.0,
    first_seen="",
    last_seen="",
)


def test_a_stable_busy_workflow_qualifies_with_its_numbers() -> None:
    a = assess(GOOD, CFG)
    assert a.qualifies and a.failed == []
    assert "498 live requests" in a.reason and "97% tool_call answers" in a.reason and "$4.20/day" in a.reason
    assert a.evidence["live_requests"] == 498 and a.evidence["template_stability"] == 1.0


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({"live_ok": 99}, "volume"),
        ({"template_stability": 0.6}, "template"),
        ({"output_consistency": 0.5, "tool_call_share": 0.5}, "output"),
        ({"error_rate": 0.2}, "errors"),
        ({"est_daily_savings": 0.3}, "savings"),
    ],
)
def test_each_threshold_alone_disqualifies(change: dict[str, float], failed: str) -> None:
    a = assess(replace(GOOD, **change), CFG)
    assert not a.qualifies and a.failed == [failed]
    assert a.reason.startswith(f"not a candidate ({failed})")


def test_a_busy_workflow_is_not_nominated_again() -> None:
    a = assess(GOOD, CFG, busy="rollout running")
    assert not a.qualifies and a.failed == ["busy"] and "rollout running" in a.reason


def test_a_workflow_too_small_says_how_far_it_is() -> None:
    a = assess(replace(GOOD, live_ok=60), CFG)
    assert a.failed == ["volume"] and "60 live requests (min 100: 40 more)" in a.reason


NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def attempt(status: str, rollout_state: str = "", total_live: int = 400, **metrics: float) -> Attempt:
    return Attempt(
        tenant="acme",
        workflow="route-tickets",
        candidate_id="cand-1",
        nominated_at=NOW - dt.timedelta(minutes=10),
        student="smollm2-135m",
        examples=360,
        total_live=total_live,
        adapter_id="adapter-1",
        status=status,
        rollout_state=rollout_state,
        metrics=dict(metrics),
        offline_score=0.3,
    )


@pytest.mark.parametrize(("status", "state"), [("rejected", ""), ("failed", ""), ("ready", "rolled_back")])
def test_a_failed_attempt_is_retried_once_the_data_doubled_not_before(status: str, state: str) -> None:
    last = attempt(status, state, gate_test=1.0, candidate_gold_accuracy=0.125)
    early = assess(GOOD, CFG, last=last, total_live=799, now=NOW)
    assert early.failed == ["growth"] and "retry at 800 (x2): 1 more" in early.reason
    assert "gold score 0.12" in early.reason  # the gate decided on gold: that is the score reported
    due = assess(GOOD, CFG, last=last, total_live=800, now=NOW)
    assert due.qualifies and "retrying at 800" in due.reason and due.evidence["total_live_requests"] == 800
    # configurable: 1.5x
    assert assess(GOOD, replace_cfg(retry_growth=1.5), last=last, total_live=600, now=NOW).qualifies


def replace_cfg(**change: float) -> DetectionConfig:
    return CFG.model_copy(update=change)


def test_any_other_attempt_waits_out_the_cooldown() -> None:
    no_refresh = replace_cfg(refresh_growth=None)
    for status, state in (("", ""), ("ready", "promoted"), ("ready", "canary")):
        a = assess(GOOD, no_refresh, last=attempt(status, state), total_live=10_000, now=NOW)
        assert a.failed == ["busy"] and "cooldown 24 h" in a.reason, (status, state)
    later = NOW + dt.timedelta(hours=25)
    assert assess(GOOD, no_refresh, last=attempt("ready", "promoted"), total_live=10, now=later).qualifies


def test_a_promoted_workflow_is_retrained_once_fresh_live_answers_doubled() -> None:
    # Its adapter serves it now: few live answers in the window, no savings left to find.
    served = replace(GOOD, live_ok=12, est_daily_savings=0.0)
    last = attempt("ready", "promoted", total_live=400)
    early = assess(served, CFG, last=last, total_live=799, now=NOW)
    assert early.failed == ["fresh data"] and "retrain at 800 (x2): 1 more" in early.reason
    due = assess(served, CFG, last=last, total_live=800, now=NOW)
    assert due.qualifies and "retraining at 800" in due.reason
    # The window's shape still matters: a workflow whose answers scattered is not retrained blindly.
    scattered = replace(served, output_consistency=0.5)
    assert assess(scattered, CFG, last=last, total_live=800, now=NOW).failed == ["output"]


def test_an_attempt_from_before_totals_were_kept_grows_from_its_dataset_size() -> None:
    last = attempt("rejected", total_live=0)
    assert "retry at 720 (x2): 20 more" in assess(GOOD, CFG, last=last, total_live=700, now=NOW).reason
    assert assess(GOOD, CFG, last=last, total_live=720, now=NOW).qualifies
