"""The demo report's numbers, from hand-built events: gold accuracy, grader agreement, cost."""

from __future__ import annotations

import json

import pytest

from cumulus.config import load_config
from cumulus.kafka import codec
from cumulus.v1 import common_pb2, events_pb2
from ops.demo import report
from ops.demo.bfcl import BfclItem
from ops.demo.observer import Seen
from ops.demo.profile import PROFILES
from ops.demo.workloads import WORKLOADS, workload
from ops.demo.workloads.bfcl import BfclWorkload

BFCL = BfclWorkload()

ITEM = BfclItem(
    id="simple_python_0",
    category="simple_python",
    question="Area of a triangle with base 10 and height 5?",
    functions=[
        {
            "name": "calculate_triangle_area",
            "description": "",
            "parameters": {
                "type": "dict",
                "properties": {"base": {"type": "integer"}, "height": {"type": "integer"}},
                "required": ["base", "height"],
            },
        }
    ],
    gold=[{"calculate_triangle_area": {"base": [10], "height": [5]}}],
)
RIGHT = (
    '<tool_call>\n{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}\n</tool_call>'
)
WRONG = '{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 6}}'


def _output(model: str, text: str, adapter: str = "", tokens: int = 100) -> events_pb2.ShadowOutput:
    return events_pb2.ShadowOutput(
        route=common_pb2.Route(target=common_pb2.RouteTarget(model=model, adapter_id=adapter)),
        text=text,
        usage=common_pb2.Usage(prompt_tokens=tokens - 20, completion_tokens=20),
        latency_ms=400.0 if model == "live" else 100.0,
    )


def _seen(cases: list[tuple[str, str, bool]]) -> tuple[Seen, dict[str, BfclItem]]:
    """(live text, candidate text, judge verdict) per request, each asking ITEM again."""
    seen, items = Seen(), {}
    for n, (live, candidate, passed) in enumerate(cases):
        request_id, pair_id = f"r{n}", f"p{n}"
        items[request_id] = BfclItem(**{**ITEM.__dict__, "id": f"q{n}"})
        seen.pairs[pair_id] = events_pb2.ShadowPair(
            meta=codec.new_meta(tenant="t", workflow="w", producer="gateway"),
            pair_id=pair_id,
            request_id=request_id,
            adapter_id="ad-1",
            live=_output("live", live),
            candidate=_output("small", candidate, "ad-1"),
        )
        seen.verdicts[pair_id] = events_pb2.Verdict(pair_id=pair_id, adapter_id="ad-1", passed=passed)
    return seen, items


def test_gold_accuracy_and_grader_agreement_count_what_bfcl_says() -> None:
    seen, items = _seen(
        [
            (RIGHT, RIGHT, True),  # both right, judge agrees: counted, agrees
            (RIGHT, WRONG, False),  # candidate wrong, judge fails it: counted, agrees
            (RIGHT, WRONG, True),  # judge passed a wrong answer: counted, disagrees
            (WRONG, RIGHT, False),  # live wrong: not a reference, not counted for agreement
        ]
    )
    stats = report.pair_stats(seen, "ad-1", items, {"live": 4e8, "small": 1e8, "lora": 0.0}, BFCL.correct)
    gold = stats["gold_accuracy"]
    assert (gold["live"], gold["candidate"], gold["questions"]) == (0.75, 0.5, 4)
    assert gold["live_interval"][0] < 0.75 < gold["live_interval"][1]
    assert stats["gold_accuracy_gain"] == -0.25
    assert stats["gold_accuracy_ratio"] == pytest.approx(0.5 / 0.75, abs=1e-4)
    assert stats["grader_vs_gold_agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert stats["grader_vs_gold_checked"] == 3
    assert stats["cost_ratio"] == 4.0 and stats["latency_ratio"] == 4.0


def test_targets_and_table_name_what_was_missed() -> None:
    body = {
        "detection_to_promotion_seconds": 950.0,
        "gold_accuracy_ratio": 0.97,
        "cost_ratio": 4.2,
        "grader_vs_gold_agreement": 0.99,
        "rollout_final_state": "promoted",
        "rollout_steps": [{"test": "agreement"}, {"test": "gold"}, {"test": ""}],
        "bad_adapter_final_state": "rolled_back",
        "parameters": {"live": 494_032_768.0, "small": 134_515_008.0, "lora": 1_474_560.0},
        "student": "smollm2-135m-instruct",
    }
    body["targets"] = {k: list(v) for k, v in BFCL.targets.items()}
    body["targets_met"] = report.targets_met(body, BFCL.targets)
    assert body["targets_met"]["detection_to_promotion_seconds"] is False
    assert body["targets_met"]["bad_adapter_rolled_back"] is True
    shown = report.table(body)
    assert "targets missed                               detection_to_promotion_seconds" in shown
    assert "parameters live / candidate base + LoRA      494.03M / 134.52M + 1.47M" in shown
    assert "student (base model trained)                 smollm2-135m-instruct" in shown
    assert "cost ratio live / candidate (>= 4)           4.2" in shown
    assert "promoted after 3 transitions, decided on agreement/gold" in shown
    json.dumps(body)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_a_target_that_cannot_be_computed_is_missed(name: str) -> None:
    targets = workload(name).targets
    met = report.targets_met({key: None for key in targets}, targets)
    assert targets and not any(met[key] for key in targets)


def test_a_held_workload_needs_no_promotion_and_a_reason() -> None:
    targets = {"max_candidate_share": ("<=", 0.0)}
    body = {"expected": "held", "max_candidate_share": 0.0, "rollout_final_state": "", "held_reason": ""}
    assert report.targets_met(body, targets) == {"max_candidate_share": True, "held_with_reason": False}
    body["held_reason"] = "smollm2-135m-instruct trained on 120 examples: gold accuracy 0.30 ..."
    assert all(report.targets_met(body, targets).values())
    assert not report.targets_met({**body, "max_candidate_share": 0.1}, targets)["max_candidate_share"]


def test_wilson_intervals_hold_the_proportion_and_stay_in_bounds() -> None:
    assert report.wilson(0, 0) is None
    low, high = report.wilson(0, 10) or [1.0, 1.0]
    assert low == 0.0 and 0.2 < high < 0.35
    low, high = report.wilson(50, 100) or [0.0, 0.0]
    assert low == pytest.approx(0.404, abs=1e-3) and high == pytest.approx(0.596, abs=1e-3)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_is_a_valid_stack_configuration(name: str) -> None:
    profile = PROFILES[name]
    config = load_config(env=profile.service_env())
    assert config.router.canary_steps == profile.canary_steps
    assert config.collector.detection.min_requests <= profile.capture_requests
    assert config.trainer.recipe is not None and config.trainer.recipe.is_file()


def test_a_demo_that_stops_reports_the_stage_and_what_it_saw() -> None:
    from ops.demo import summary
    from ops.demo.observer import Observer
    from ops.demo.runner import DemoRun

    run = DemoRun(load_config(env={}), PROFILES["quick"], BFCL, say=lambda _: None)
    run.phases.update({"capture": 210.0, "detect": 60.0, "train": 300.0})
    observer = Observer("127.0.0.1:1", run.tenant)
    observer.seen.adapters["ad-1"] = events_pb2.AdapterEvent(
        adapter_id="ad-1", status=events_pb2.ADAPTER_STATUS_REJECTED, offline_score=0.3
    )
    partial = summary.partial(run, observer, "adapter ad-1 ended REJECTED")
    assert partial["stopped_in"] == "train" and partial["error"] == "adapter ad-1 ended REJECTED"
    assert partial["adapters"]["ad-1"]["status"] == "ADAPTER_STATUS_REJECTED"
    json.dumps(partial)


def test_audit_stats_count_only_the_promoted_adapters_graded_answers() -> None:
    seen, _ = _seen([(RIGHT, RIGHT, True), (RIGHT, WRONG, False), (RIGHT, RIGHT, True)])
    assert report.audit_stats(seen, "ad-1") == {"audit_verdicts": 0, "audit_pass_rate": None}
    for pair_id in ("p1", "p2"):  # answered by the promoted adapter, copied to live for the audit
        seen.pairs[pair_id].candidate.route.mode = common_pb2.ROUTE_MODE_PROMOTED
    assert report.audit_stats(seen, "ad-1") == {"audit_verdicts": 2, "audit_pass_rate": 0.5}


def test_the_drift_signals_seen_are_listed_and_shown() -> None:
    seen = Seen()
    signal = events_pb2.DriftSignal(
        adapter_id="ad-1", signal="new_tools", severity=events_pb2.DRIFT_SEVERITY_CRITICAL, detail="50% new"
    )
    seen.drift.append((112.34, signal))
    [listed] = report.drift_seen(seen, t0=100.0)
    assert listed == {
        "at_s": 12.3,
        "adapter_id": "ad-1",
        "signal": "new_tools",
        "severity": "critical",
        "detail": "50% new",
    }
    assert "drift signals seen" in report.table({"drift_signals": [listed]})
    assert "new_tools critical at 12.3 s" in report.table({"drift_signals": [listed]})
    assert "drift signals seen                           none" in report.table({"drift_signals": []})
