"""What the loop learns, against the real collector (Kafka, chDB): retry on growth, data sufficiency.

A workflow is nominated by detection; the trainer's verdict (an AdapterEvent for that candidate,
rejected on gold) reaches the collector over Kafka; the candidate list then shows the outcome, the
learning curve's first point and the workflow waiting for its data to double; once it has, the
next check nominates it again. A label-shaped workflow with feedback on some requests gets a
data-sufficiency estimate in the candidate list: labelled examples per label, and how many more.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cumulus.kafka import codec, topics
from cumulus.operators import ensure_dev_operator_token
from cumulus.v1 import events_pb2
from tests.integration.collector_process import (
    REPO,
    CollectorProcess,
    inference_event,
    produce,
    stamped,
)
from tests.integration.test_collector import running_collector, send, wf

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def collector(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    yield from running_collector(kafka_bootstrap, tmp_path_factory)


def poll(collector: CollectorProcess, until: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """/api/v1/candidates until ``until(body)``."""
    deadline, body = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        status, body = collector.get("/api/v1/candidates")
        assert status == 200, body
        if until(body):
            return body
        time.sleep(0.5)
    raise AssertionError(
        f"{what}: not after 60 s; last answer {body}; detection {collector.get('/api/v1/detection')}"
    )


def rejected(candidate: dict[str, Any]) -> tuple[bytes, bytes]:
    event = events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant=candidate["tenant"], workflow=candidate["workflow"], producer="trainer"),
        adapter_id=f"adapter-{candidate['candidate_id'][-8:]}",
        candidate_id=candidate["candidate_id"],
        dataset_id=candidate["dataset_id"],
        base_model=candidate["base_model"],
        status=events_pb2.ADAPTER_STATUS_REJECTED,
        offline_score=0.2,
        metrics={
            "gate_test": 1.0,
            "candidate_gold_accuracy": 0.2,
            "live_gold_accuracy": 0.3,
            "gold_rows": 8.0,
        },
    )
    return codec.encode_key(candidate["tenant"], candidate["workflow"]), codec.encode_event(event)


def test_a_rejected_workflow_is_retried_once_its_data_doubled(
    collector: CollectorProcess, kafka_bootstrap: str
) -> None:
    name = wf("grow")
    send(kafka_bootstrap, [stamped(inference_event(name, i)) for i in range(60)])
    body = poll(collector, lambda b: any(c["workflow"] == name for c in b["candidates"]), "first nomination")
    (first,) = [c for c in body["candidates"] if c["workflow"] == name]
    had = int(first["evidence"]["total_live_requests"])
    assert 50 <= had <= 60 and first["outcome"] == "pending"

    asyncio.run(produce(kafka_bootstrap, topics.ADAPTERS.name, [rejected(first)]))

    def waiting(b: dict[str, Any]) -> bool:
        return any(w["workflow"] == name and w["failed"] == ["growth"] for w in b["waiting"])

    body = poll(collector, waiting, "waiting for growth")
    (mine,) = [c for c in body["candidates"] if c["workflow"] == name]
    assert mine["outcome"] == "rejected"
    (curve,) = [c for c in body["learning_curves"] if c["workflow"] == name]
    (point,) = curve["points"]
    assert curve["student"] == first["base_model"]
    assert (point["examples"], point["score"], point["test"], point["passed"]) == (
        first["train_examples"] + first["holdout_examples"],
        0.2,
        "gold",
        False,
    )
    (note,) = [w["reason"] for w in body["waiting"] if w["workflow"] == name]
    assert f"retry at {2 * had} (x2)" in note
    time.sleep(3)  # three more checks: still one candidate, the data has not doubled
    _, body = collector.get("/api/v1/candidates")
    assert [c["candidate_id"] for c in body["candidates"] if c["workflow"] == name] == [first["candidate_id"]]

    send(kafka_bootstrap, [stamped(inference_event(name, i)) for i in range(60, 60 + had + 5)])
    body = poll(
        collector, lambda b: sum(c["workflow"] == name for c in b["candidates"]) == 2, "nomination on growth"
    )
    second = next(
        c for c in body["candidates"] if c["workflow"] == name and c["candidate_id"] != first["candidate_id"]
    )
    assert "retrying at" in second["reason"] and second["evidence"]["total_live_requests"] >= 2 * had


def feedback(
    tenant: str, workflow: str, request_id: str, later_s: float = 0.0, **fields: Any
) -> tuple[bytes, bytes]:
    """A FeedbackEvent; ``later_s`` moves it forward, so which of two notes is the latest is not a tie."""
    meta = codec.new_meta(tenant=tenant, workflow=workflow, producer="test")
    meta.occurred_at.FromNanoseconds(meta.occurred_at.ToNanoseconds() + int(later_s * 1e9))
    event = events_pb2.FeedbackEvent(meta=meta, request_id=request_id, **fields)
    return codec.encode_key(tenant, workflow), codec.encode_event(event)


def test_a_label_workflow_says_how_many_more_labelled_examples_would_help(
    collector: CollectorProcess, kafka_bootstrap: str, tmp_path: Path
) -> None:
    name = wf("labels")
    labels = ["billing", "tech", "sales", "refund"]
    events = [inference_event(name, i, response=labels[i % 4].title()) for i in range(60)]
    send(kafka_bootstrap, [stamped(e) for e in events])
    collector.wait_for_rows(name, 60)
    by_label = {label: [e for e in events if e.response_text.lower() == label] for label in labels}
    billing, tech, sales = by_label["billing"], by_label["tech"], by_label["sales"]
    notes = [
        *(feedback("acme", name, e.request_id, label="good") for e in billing[:3]),  # confirmed: billing
        *(feedback("acme", name, e.request_id, correction="Sales.") for e in tech[:2]),  # corrected: sales
        feedback("acme", name, sales[0].request_id, label="bad"),  # refuted: says no right label
        feedback("acme", name, tech[2].request_id, correction="tech"),
        feedback("acme", name, tech[2].request_id, later_s=1, score=0.1),  # the latest wins: refuted
        feedback("acme", name, tech[3].request_id, label="needs-review"),  # a tag, no gold
    ]
    asyncio.run(produce(kafka_bootstrap, topics.FEEDBACK.name, notes))

    def estimated(b: dict[str, Any]) -> bool:
        return any(s["workflow"] == name and s["labelled"] == 5 for s in b.get("sufficiency", []))

    body = poll(collector, estimated, "sufficiency estimate")
    (mine,) = [s for s in body["sufficiency"] if s["workflow"] == name]
    assert mine["labels"] == {"refund": 0, "tech": 0, "sales": 2, "billing": 3}
    assert mine["unseen_labels"] == ["refund", "tech"]
    assert (mine["min_per_label"], mine["median_per_label"]) == (2, 2.5)
    assert mine["more_needed"] == 8 + 8 + 6 + 5  # detection.min_examples_per_label: 8
    assert "needs ~27 more labelled examples" in mine["advice"]
    assert "refund (never in gold), tech (never in gold), sales (2), billing (3)" in mine["advice"]
    # The ticket-routing workflows of the other test answer with tool calls: no estimate for them.
    assert all(s["workflow"].startswith("labels-") for s in body["sufficiency"])

    config = tmp_path / "cumulus.yaml"
    state = {"state_dir": str(collector.state_dir), "collector": {"health_port": collector.port}}
    config.write_text(json.dumps(state))  # the collector's state dir: the CLI sends its operator token
    ensure_dev_operator_token(collector.state_dir)
    printed = subprocess.run(
        [sys.executable, "-m", "ops.cli.main", "--config", str(config), "candidates"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert printed.returncode == 0, printed.stderr
    assert f"labelled data acme/{name}: 5 labelled examples over 2 of 4 labels" in printed.stdout
