"""Shaping rollout history for the dashboard: grouping, the step chart's points, pass-rate buckets."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.collector.rollout_views import bucket_seconds, pass_rate_points, shape_rollouts, verdict_totals

T0 = dt.datetime(2025, 3, 1, 12, 0, 0)  # naive UTC, as clickhouse-connect may answer
NOW = dt.datetime(2025, 3, 1, 12, 10, 0, tzinfo=dt.UTC)


def move(rollout: str, s: float, from_state: str, to_state: str, step: int, weight: float) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "workflow": rollout.split("/")[0],
        "rollout_id": rollout,
        "adapter_id": rollout.split("/")[1],
        "occurred_at": T0 + dt.timedelta(seconds=s),
        "from_state": from_state,
        "to_state": to_state,
        "step": step,
        "weight": weight,
        "reason": f"{from_state}->{to_state}",
        "actor": "router",
        "evidence": {"n": 100.0},
    }


def test_bucket_size_follows_the_span() -> None:
    assert bucket_seconds(120) == 5  # a two-minute rollout: 24 points
    assert bucket_seconds(600) == 10
    assert bucket_seconds(3600) == 60
    assert bucket_seconds(86400) == 1800
    assert bucket_seconds(10**9) == 86400


def test_a_finished_rollout_ends_at_its_last_transition() -> None:
    rows = [
        move("wf/ad-1", 0, "", "shadow", 0, 0.0),
        move("wf/ad-1", 30, "shadow", "canary", 1, 0.05),
        move("wf/ad-1", 120, "canary", "promoted", 2, 1.0),
    ]
    (history,) = shape_rollouts(rows, NOW)
    assert (history.state, history.step, history.weight, history.finished) == ("promoted", 2, 1.0, True)
    assert history.started_at == "2025-03-01T12:00:00.000+00:00"
    assert history.until == "2025-03-01T12:02:00.000+00:00"
    assert history.bucket_s == 5
    assert [p["weight"] for p in history.traffic] == [0.0, 0.05, 1.0]  # no extra point at the end
    assert history.transitions[1]["evidence"] == {"n": 100.0}


def test_a_running_rollout_extends_its_last_weight_to_now() -> None:
    rows = [move("wf/ad-1", 0, "", "shadow", 0, 0.0), move("wf/ad-1", 60, "shadow", "canary", 1, 0.05)]
    (history,) = shape_rollouts(rows, NOW)
    assert not history.finished and history.until == "2025-03-01T12:10:00.000+00:00"
    assert history.traffic[-1] == {"t": history.until, "weight": 0.05, "state": "canary"}
    assert history.bucket_s == 10  # ten minutes: 60 buckets


def test_rollouts_are_grouped_and_the_latest_moved_comes_first() -> None:
    rows = [
        move("a/ad-1", 0, "", "shadow", 0, 0.0),
        move("b/ad-2", 10, "", "shadow", 0, 0.0),
        move("a/ad-1", 20, "shadow", "rolled_back", 0, 0.0),
    ]
    histories = shape_rollouts(rows, NOW)
    assert [h.rollout_id for h in histories] == ["a/ad-1", "b/ad-2"]
    assert [len(h.transitions) for h in histories] == [2, 1]
    assert histories[0].state == "rolled_back" and histories[0].finished


def test_pass_rate_per_bucket_and_totals() -> None:
    rows = [
        {"t": T0, "n": 4, "agreed": 3, "errors": 1},
        {"t": T0 + dt.timedelta(seconds=5), "n": 0, "agreed": 0, "errors": 0},
        {"t": T0 + dt.timedelta(seconds=10), "n": 2, "agreed": 2, "errors": 0},
    ]
    points = pass_rate_points(rows)
    assert [(p["t"][11:19], p["pass_rate"]) for p in points] == [("12:00:00", 0.75), ("12:00:10", 1.0)]
    totals = verdict_totals(points)
    assert (totals["n"], totals["passed"], totals["pass_rate"], totals["gold_n"]) == (6, 5, 5 / 6, 0)
    assert totals["gold_candidate_accuracy"] is None
    assert verdict_totals([])["pass_rate"] is None


def test_gold_accuracy_is_cumulative_and_kept_apart_from_agreement() -> None:
    rows = [
        {"t": T0, "n": 4, "agreed": 1, "errors": 0, "gold_n": 2, "gold_candidate": 2, "gold_live": 0},
        {
            "t": T0 + dt.timedelta(seconds=5),
            "n": 0,
            "agreed": 0,
            "errors": 0,
            "gold_n": 2,
            "gold_candidate": 1,
        },
    ]
    points = pass_rate_points(rows)
    assert [p["pass_rate"] for p in points] == [0.25, None]  # a gold-only bucket has no agreement rate
    assert [p["gold_candidate_accuracy"] for p in points] == [1.0, 0.75]
    assert [p["gold_live_accuracy"] for p in points] == [0.0, 0.0]
    totals = verdict_totals(points)
    assert (totals["n"], totals["gold_n"], totals["gold_candidate_accuracy"]) == (4, 4, 0.75)
