"""`cumulus demo --drift`: the drifted traffic reaches the promoted workflow with new tools, and the
stage's report is computed from the services' events and BFCL's checker."""

from __future__ import annotations

from typing import Any

import pytest

from cumulus.kafka import codec
from cumulus.v1 import events_pb2
from ops.demo.client import Answer
from ops.demo.drift_stage import DriftedBfcl, drift_report
from ops.demo.observer import Seen
from ops.demo.workloads.bfcl import BfclWorkload

pytest.importorskip("bfcl_eval", reason="bfcl-eval is installed by scripts/setup.sh (model-assets.txt)")
META = codec.new_meta(tenant="demo", workflow="wf-app", producer="test")


def test_the_drifted_app_names_its_workflow_and_offers_tools_the_first_app_never_had() -> None:
    drifted = DriftedBfcl("wf-app")
    fresh, later = drifted.items(40, 10)
    assert len(fresh) == 40 and len(later) == 10
    request = drifted.request(fresh[0], "r-1")
    assert request.workflow == "wf-app" and request.tools
    first, _ = BfclWorkload().items(40, 10)
    first_tools = {f["name"] for item in first for f in item.functions}
    assert not first_tools & {f["name"] for item in fresh for f in item.functions}


def answer(n: int, adapter_id: str, text: str) -> Answer:
    return Answer(
        item=n,
        request_id=f"r-{n}",
        workflow="wf-app",
        text=text,
        route_mode=0,
        adapter_id=adapter_id,
        latency_ms=1.0,
        prompt_tokens=1,
        completion_tokens=1,
    )


def rollout(adapter_id: str, to_state: str) -> events_pb2.RolloutEvent:
    return events_pb2.RolloutEvent(meta=META, adapter_id=adapter_id, from_state="promoted", to_state=to_state)


def test_the_report_counts_degraded_answers_times_and_each_models_gold_accuracy() -> None:
    seen = Seen()
    seen.rollouts = [(90.0, rollout("ad-v1", "promoted")), (130.0, rollout("ad-v1", "rolled_back"))]
    seen.drift = [
        (120.0, events_pb2.DriftSignal(meta=META, adapter_id="ad-v1", signal="new_tools", severity=3))
    ]
    seen.candidates = [
        (10.0, events_pb2.CandidateEvent(meta=META, candidate_id="c-1")),
        (300.0, events_pb2.CandidateEvent(meta=META, candidate_id="c-2")),
    ]
    v2 = events_pb2.AdapterEvent(
        meta=META,
        adapter_id="ad-v2",
        candidate_id="c-2",
        gate_passed=True,
        status=events_pb2.ADAPTER_STATUS_READY,
        offline_score=0.8,
    )
    seen.adapters = {"ad-v2": v2}
    seen.rollouts.append((600.0, rollout("ad-v2", "promoted")))
    answers = [answer(i, "ad-v1", "wrong" if i < 7 else "right") for i in range(10)]
    answers += [answer(10 + i, "", "right" if i < 8 else "wrong") for i in range(10)]
    answers += [answer(20 + i, "ad-v2", "right" if i < 9 else "wrong") for i in range(10)]

    def correct(_: Any, text: str) -> bool:
        return text == "right"

    assert seen.outcome("c-2") is seen.outcome() is v2 and seen.outcome("c-1") is None
    assert seen.finished("ad-v2") and not seen.finished("ad-v3")
    body = drift_report(seen, 100.0, "ad-v1", v2, answers, correct)
    assert (body["rollback_seconds"], body["renominated_seconds"]) == (30.0, 200.0)
    assert (body["degraded_answers_served"], body["answers_by_promoted_adapter"]) == (7, 10)
    assert body["signals"] == [
        {"at_s": 20.0, "adapter_id": "ad-v1", "signal": "new_tools", "severity": "critical"}
    ]
    assert [(a["to"], a["at_s"]) for a in body["actions"]] == [("rolled_back", 30.0), ("promoted", 500.0)]
    assert body["v2"]["final_state"] == "promoted" and body["v2"]["promoted_seconds"] == 500.0
    accuracy = {k: v["accuracy"] for k, v in body["gold_accuracy"].items()}
    assert accuracy == {"promoted_adapter": 0.3, "live": 0.8, "v2": 0.9}
