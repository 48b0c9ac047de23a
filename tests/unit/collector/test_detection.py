"""Candidate rules: a qualifying workflow, each threshold failing on its own, busy workflows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cumulus.config import DetectionConfig
from services.collector.detection import assess
from services.collector.insights import WorkflowStats

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
