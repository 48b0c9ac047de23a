"""After promotion, against the real collector (Kafka, chDB, the artifact store): drift, and the
audit's live answers as training data.

A workflow's live traffic is exported as a dataset; an adapter trained on it is promoted (its
AdapterEvent and RolloutEvent reach the collector over Kafka, as the trainer's and the router's
would); then half of the promoted adapter's requests offer a tool the dataset never had. The
collector's drift watch must name that signal as critical, publish it once on cumulus.drift.v1
(not again at every check), store it in drift_signals, and leave the signals that did not move at
severity 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cumulus.artifacts import ArtifactStore, read_jsonl
from cumulus.kafka import codec, topics
from cumulus.operators import auth_headers
from cumulus.v1 import common_pb2, events_pb2
from ops.stack.probes import probe_collector
from tests.integration.collector_process import CollectorProcess, inference_event, produce, stamped
from tests.integration.test_collector import events_of, new_collector, send, wf

pytestmark = pytest.mark.integration

SETTINGS = {
    "CUMULUS_COLLECTOR__DETECTION__ENABLED": "false",
    "CUMULUS_COLLECTOR__EXPORT__MIN_EXAMPLES": "10",
    "CUMULUS_COLLECTOR__DRIFT__INTERVAL_S": "1",
    "CUMULUS_COLLECTOR__DRIFT__MIN_REQUESTS": "20",
}


@pytest.fixture(scope="module")
def collector(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    process = new_collector(kafka_bootstrap, tmp_path_factory.mktemp("drift"), **SETTINGS)
    process.start()
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log_tail()


def publish(bootstrap: str, topic: topics.TopicSpec, event: Any) -> None:
    key = codec.encode_key(event.meta.tenant, event.meta.workflow)
    asyncio.run(produce(bootstrap, topic.name, [(key, codec.encode_event(event))]))


def promote(bootstrap: str, name: str, candidate: dict[str, Any], adapter_id: str) -> None:
    """What the trainer and the router would publish for an adapter trained on ``candidate``'s dataset."""
    meta = {"tenant": "acme", "workflow": name}
    adapter = events_pb2.AdapterEvent(
        meta=codec.new_meta(**meta, producer="trainer"),
        adapter_id=adapter_id,
        candidate_id=candidate["candidate_id"],
        dataset_id=candidate["dataset_id"],
        base_model="smollm2-135m",
        status=events_pb2.ADAPTER_STATUS_READY,
        gate_passed=True,
    )
    publish(bootstrap, topics.ADAPTERS, adapter)
    promoted = events_pb2.RolloutEvent(
        meta=codec.new_meta(**meta, producer="router"),
        rollout_id=f"{name}/{adapter_id}",
        adapter_id=adapter_id,
        from_state="canary",
        to_state="promoted",
        weight=1.0,
        step=5,
        reason="non-inferior",
    )
    publish(bootstrap, topics.ROLLOUTS, promoted)


def transition(name: str, adapter_id: str, to_state: str) -> events_pb2.RolloutEvent:
    return events_pb2.RolloutEvent(
        meta=codec.new_meta(tenant="acme", workflow=name, producer="router"),
        rollout_id=f"{name}/{adapter_id}",
        adapter_id=adapter_id,
        to_state=to_state,
    )


def wait_until_watched(collector: CollectorProcess, name: str, adapters: list[str]) -> None:
    deadline, watched = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        watched = [w["adapter_id"] for w in collector.get(f"/api/v1/drift?workflow={name}")[1]["watched"]]
        if watched == adapters:
            return
        time.sleep(0.3)
    raise AssertionError(f"{name}: watched {watched}, expected {adapters}")


def served_by(adapter_id: str, name: str, i: int, new_tool: bool) -> tuple[bytes, bytes]:
    event = inference_event(name, 1000 + i)
    event.route.target.CopyFrom(common_pb2.RouteTarget(model="small", adapter_id=adapter_id))
    event.route.mode = common_pb2.ROUTE_MODE_PROMOTED
    if new_tool:
        event.tools.add(name="refund_order", description="Refund an order", parameters_json="{}")
    return stamped(event)


def test_a_new_tool_after_promotion_is_announced_once_and_stored(
    collector: CollectorProcess, kafka_bootstrap: str
) -> None:
    name, adapter_id = wf("drift"), f"ad-{wf('x')}"
    send(kafka_bootstrap, [stamped(inference_event(name, i)) for i in range(60)])
    collector.wait_for_rows(name, 60)
    status, candidate = collector.request("POST", f"/api/v1/workflows/{name}/nominate", {"tenant": "acme"})
    assert status == 200, candidate
    assert candidate["parent_adapter_id"] == ""  # a first adapter
    promote(kafka_bootstrap, name, candidate, adapter_id)
    send(kafka_bootstrap, [served_by(adapter_id, name, i, new_tool=i % 2 == 0) for i in range(40)])

    deadline, body = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        status, body = collector.get(f"/api/v1/drift?workflow={name}")
        assert status == 200, body
        if body["signals"]:
            break
        time.sleep(0.5)
    [stored] = body["signals"]
    assert (stored["signal"], stored["severity"], stored["adapter_id"]) == (
        "new_tools",
        "critical",
        adapter_id,
    )
    assert stored["dataset_id"] == candidate["dataset_id"] and "refund_order" in stored["detail"]
    assert stored["evidence"]["share"] == 0.5
    [watched] = body["watched"]
    measured = {s["signal"]: s["severity"] for s in watched["signals"]}
    assert measured == {
        "new_tools": "critical",
        "template": "none",
        "prompt_length": "none",
        "output_shape": "none",
    }

    time.sleep(3)  # three more checks: the same drift is not announced again
    [event] = events_of(kafka_bootstrap, topics.DRIFT, name)
    assert event.severity == events_pb2.DRIFT_SEVERITY_CRITICAL and event.adapter_id == adapter_id
    assert len(collector.get(f"/api/v1/drift?workflow={name}")[1]["signals"]) == 1

    # While another version rolls out its own gate is in charge; once it is rolled back, the
    # promoted one (still serving) is watched again.
    for state, watched_adapters in (("shadow", []), ("rolled_back", [adapter_id])):
        publish(kafka_bootstrap, topics.ROLLOUTS, transition(name, "ad-next", state))
        wait_until_watched(collector, name, watched_adapters)

    # The workflow's next version names the promoted one as its parent (the trainer may start from it).
    status, again = collector.request("POST", f"/api/v1/workflows/{name}/nominate", {"tenant": "acme"})
    assert status == 200 and again["parent_adapter_id"] == adapter_id, again

    # `cumulus status` names it on the collector's line.
    probe = probe_collector("127.0.0.1", collector.port, auth_headers(collector.state_dir))
    assert probe.healthy and f"DRIFT: {name} new_tools critical" in probe.detail, probe.detail

    # Paused straight from promoted (a drift warning's step back) it still serves its share, so it
    # is still watched; paused from a step of its rollout, the rollout holds the workflow.
    for adapter, from_state, watched_adapters in (
        (adapter_id, "promoted", [adapter_id]),
        ("ad-next", "canary", []),
    ):
        before = collector.capture_counts(name, "rollout_events")["events"]
        paused = transition(name, adapter, "paused")
        paused.from_state = from_state
        publish(kafka_bootstrap, topics.ROLLOUTS, paused)
        deadline = time.monotonic() + 30
        while collector.capture_counts(name, "rollout_events")["events"] == before:
            assert time.monotonic() < deadline, "the pause never reached rollout_events"
            time.sleep(0.3)
        wait_until_watched(collector, name, watched_adapters)


def audit_pair(served: tuple[bytes, bytes], live_text: str, mode: int) -> tuple[bytes, bytes]:
    """The gateway's shadow pair for a request: an audit's (live asked in shadow) or a rollout's."""
    event = codec.decode_as(events_pb2.InferenceEvent, served[1])
    pair = events_pb2.ShadowPair(
        meta=codec.new_meta(tenant="acme", workflow=event.meta.workflow, producer="gateway"),
        pair_id=f"pair-{event.request_id}",
        request_id=event.request_id,
        adapter_id=event.route.target.adapter_id,
        messages=event.messages,
        tools=event.tools,
        live=events_pb2.ShadowOutput(
            route=common_pb2.Route(target=common_pb2.RouteTarget(model="live"), mode=mode),  # type: ignore[arg-type]
            text=live_text,
            status=common_pb2.STATUS_OK,
        ),
        candidate=events_pb2.ShadowOutput(
            route=event.route, text=event.response_text, status=common_pb2.STATUS_OK
        ),
    )
    return served[0], codec.encode_event(pair)


def test_the_audits_live_answers_are_training_data_counted_once(
    collector: CollectorProcess, kafka_bootstrap: str
) -> None:
    name, adapter_id = wf("audit"), f"ad-{wf('y')}"
    send(kafka_bootstrap, [stamped(inference_event(name, i)) for i in range(20)])
    served = [served_by(adapter_id, name, i, new_tool=False) for i in range(30)]
    send(kafka_bootstrap, served)
    audits = [
        audit_pair(s, f"live says {i}", common_pb2.ROUTE_MODE_SHADOW) for i, s in enumerate(served[:20])
    ]
    rollout_pairs = [audit_pair(s, "incumbent", common_pb2.ROUTE_MODE_LIVE) for s in served[20:]]
    asyncio.run(produce(kafka_bootstrap, topics.SHADOW.name, audits + rollout_pairs))

    deadline = time.monotonic() + 60
    while collector.capture_counts(name, "audit_answers")["events"] < 20 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert collector.capture_counts(name, "audit_answers")["final"] == 20  # rollout pairs are not kept
    assert collector.capture_counts(name)["final"] == 50  # and no request is stored twice

    status, candidate = collector.request("POST", f"/api/v1/workflows/{name}/nominate", {"tenant": "acme"})
    assert status == 200, candidate
    assert candidate["train_examples"] + candidate["holdout_examples"] == 40  # 20 served by live, 20 audited
    assert candidate["evidence"]["total_live_requests"] == 40
    folder = ArtifactStore(collector.state_dir / "artifacts").path_from_uri(candidate["dataset_uri"])
    lines = read_jsonl(folder / "train.jsonl") + read_jsonl(folder / "holdout.jsonl")
    answers = {line["messages"][-1]["content"] for line in lines}
    assert {f"live says {i}" for i in range(20)} <= answers and "incumbent" not in answers
