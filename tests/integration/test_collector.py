"""The collector end to end: real Kafka, the real ``python -m services.collector`` with embedded chDB.

Counts come from the collector's read API (``/api/v1/capture``): ``final`` = count() FINAL,
``events`` = uniqExact(event_id), ``inserted`` = rows ever inserted (summed by the materialized
view on every insert, so a background merge can't hide a batch inserted twice, as it can in
``rows`` = count()). Exactly once: final == events == inserted == the distinct events sent.
Each test uses workflows of its own; every collector starts at the end of the topics (its group's
offsets are committed there first), so events of other tests on the session broker don't matter.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from cumulus.artifacts import ArtifactStore, verify_dir
from cumulus.kafka import codec, topics
from cumulus.operators import ensure_dev_operator_token
from cumulus.v1 import events_pb2
from tests.integration.collector_process import (
    REPO,
    CollectorProcess,
    inference_event,
    partitions,
    produce,
    stamped,
    start_at_end,
)

pytestmark = pytest.mark.integration

DETECTION = {
    "CUMULUS_COLLECTOR__DETECTION__INTERVAL_S": "1",
    "CUMULUS_COLLECTOR__DETECTION__MIN_REQUESTS": "50",
    "CUMULUS_COLLECTOR__DETECTION__MIN_DAILY_SAVINGS": "0.01",
    "CUMULUS_COLLECTOR__EXPORT__MIN_EXAMPLES": "10",
}


def wf(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def send(bootstrap: str, records: list[tuple[bytes, bytes]], rate: float | None = None) -> None:
    asyncio.run(produce(bootstrap, topics.INFERENCE.name, records, rate_per_s=rate))


def new_collector(bootstrap: str, state: Path, **settings: str) -> CollectorProcess:
    collector = CollectorProcess(state, bootstrap, settings=settings)
    asyncio.run(start_at_end(bootstrap, collector.group_id))
    return collector


def running_collector(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CollectorProcess]:
    """A started collector with detection every second; at the end it must stop cleanly."""
    process = new_collector(kafka_bootstrap, tmp_path_factory.mktemp("collector"), **DETECTION)
    process.start()
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, process.log_tail()


@pytest.fixture(scope="module")
def collector(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One collector for the capture, detection and CLI tests."""
    yield from running_collector(kafka_bootstrap, tmp_path_factory)


async def _end_offsets(bootstrap: str, tps: list) -> dict:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _read_from(bootstrap: str, starts: dict) -> dict:  # type: ignore[type-arg]
    """Every record from ``starts`` to the current end, per partition."""
    ends = await _end_offsets(bootstrap, list(starts))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        out: dict = {tp: [] for tp in starts}  # type: ignore[type-arg]
        pending = {tp for tp in starts if starts[tp] < ends[tp]}
        while pending:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                out[tp] += [r for r in records if r.offset < ends[tp]]
                if records and records[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


def events_of(bootstrap: str, topic: topics.TopicSpec, workflow: str) -> list[Any]:
    """Every event on ``topic`` keyed by ``workflow``, from the start of the topic."""
    tps = asyncio.run(partitions(bootstrap, [topic.name]))
    records = asyncio.run(_read_from(bootstrap, dict.fromkeys(tps, 0)))
    return [
        codec.decode_as(topic.event_type, r.value)
        for rs in records.values()
        for r in rs
        if codec.decode_key(r.key)[1] == workflow
    ]


def dead_letters(bootstrap: str, workflow: str) -> list[events_pb2.DeadLetter]:
    return events_of(bootstrap, topics.DEADLETTER, workflow)


def test_n_events_make_exactly_n_rows_and_poison_is_dead_lettered(
    collector: CollectorProcess, kafka_bootstrap: str
) -> None:
    name = wf("exact")
    key = name.encode()
    no_meta = codec.encode_event(events_pb2.InferenceEvent(request_id="no meta"))
    overflowing, far_future = inference_event(name, 10_000), inference_event(name, 10_001)
    overflowing.meta.occurred_at.seconds = 2**40  # past year 9999: no datetime at all
    far_future.meta.occurred_at.seconds = 16_725_225_600  # 2500: beyond what DateTime64 holds
    poison = [(key, b"\x08\x96garbage"), (key, b""), (key, no_meta)]
    poison += [stamped(overflowing), stamped(far_future)]
    good = [stamped(inference_event(name, i)) for i in range(600)]
    # Poison in the middle of the stream: the events after it must still arrive.
    send(kafka_bootstrap, good[:300] + poison + good[300:])
    counts = collector.wait_for_rows(name, 600)
    assert (counts["inserted"], counts["events"], counts["final"]) == (600, 600, 600)
    letters = dead_letters(kafka_bootstrap, name)
    assert len(letters) == 5
    assert {letter.source_topic for letter in letters} == {topics.INFERENCE.name}
    reasons = sorted(letter.reason for letter in letters)
    assert any("empty record value" in r for r in reasons)
    assert any("not a valid InferenceEvent" in r for r in reasons)
    assert any("no meta.event_id" in r for r in reasons)
    assert sum("cannot be stored" in r for r in reasons) == 2, reasons
    assert any("outside 1900-2299" in r for r in reasons)
    assert collector.process is not None and collector.process.poll() is None
    assert collector.get("/readyz")[0] == 200


def test_events_sent_twice_are_stored_once(collector: CollectorProcess, kafka_bootstrap: str) -> None:
    name = wf("twice")
    events = [stamped(inference_event(name, i)) for i in range(200)]
    send(kafka_bootstrap, events)
    send(kafka_bootstrap, events)  # a producer retrying everything: same event ids, new offsets
    deadline = time.monotonic() + 90  # generous: a loaded 2-core box; the counts are what is tested
    # The endpoint reads the row counts before `inserted`: wait for both, or a batch landing
    # between the two reads shows inserted=400 beside counts from before it.
    while time.monotonic() < deadline:
        counts = collector.capture_counts(name)
        if counts["inserted"] >= 400 and counts["events"] >= 200:
            break
        time.sleep(0.2)
    assert (counts["inserted"], counts["events"], counts["final"]) == (400, 200, 200)


def test_detection_nominates_a_qualifying_workflow_only(
    collector: CollectorProcess, kafka_bootstrap: str
) -> None:
    good, bad = wf("good"), wf("bad")
    records = []
    for i in range(80):
        # Same template and tool-call answers; one in four users leaves an email to scrub.
        user = f"Ticket {i}: printer {i} is broken" + (
            f", mail me at user{i}@example.com" if i % 4 == 0 else ""
        )
        records.append(stamped(inference_event(good, i, user=user)))
        # Many templates, answers of every shape, a fifth failing.
        answer = (f"hmm {i}", json.dumps({"x": i}), None)[i % 3]
        records.append(
            stamped(inference_event(bad, i, response=answer, ok=i % 5 != 0, fingerprint=f"fp-{i % 9}"))
        )
    send(kafka_bootstrap, records)
    collector.wait_for_rows(good, 80)
    collector.wait_for_rows(bad, 80)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        _, body = collector.get("/api/v1/candidates")
        mine = [c for c in body["candidates"] if c["workflow"] == good]
        if mine:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no candidate for {good}: {collector.get('/api/v1/detection')[1]}")
    candidate = mine[0]
    # Detection may run between two batches of the 80: it needs 50, the dataset has what it saw.
    seen = candidate["evidence"]["live_requests"]
    assert candidate["nominated_by"] == "auto" and 50 <= seen <= 80
    assert "100% tool_call answers" in candidate["reason"]
    assert not [c for c in body["candidates"] if c["workflow"] == bad]
    _, detection = collector.get("/api/v1/detection")
    (verdict,) = [a for a in detection["assessments"] if a["workflow"] == bad]
    assert not verdict["qualifies"] and {"template", "output", "errors"} <= set(verdict["failed"])

    folder = ArtifactStore(collector.state_dir / "artifacts").path_from_uri(candidate["dataset_uri"])
    manifest = verify_dir(folder)
    # Redacted before the rows were stored: nothing was left for the export to find.
    assert manifest.id == candidate["dataset_id"] and manifest.fields["pii_replaced"] == {}
    assert candidate["train_examples"] + candidate["holdout_examples"] == seen
    text = (folder / "train.jsonl").read_text() + (folder / "holdout.jsonl").read_text()
    assert "@example.com" not in text and "<EMAIL_" in text
    event = _candidate_event(kafka_bootstrap, good)
    assert event.dataset_id == candidate["dataset_id"] and event.evidence["live_requests"] == seen


def _candidate_event(bootstrap: str, workflow: str) -> events_pb2.CandidateEvent:
    async def read() -> events_pb2.CandidateEvent:
        tps = await partitions(bootstrap, [topics.CANDIDATES.name])
        records = await _read_from(bootstrap, dict.fromkeys(tps, 0))
        for rs in records.values():
            for r in rs:
                if codec.decode_key(r.key)[1] == workflow:
                    return codec.decode_as(events_pb2.CandidateEvent, r.value)
        raise AssertionError(f"no CandidateEvent for {workflow}")

    return asyncio.run(read())


def test_cli_reads_workflows_and_nominates_through_the_read_api(
    collector: CollectorProcess, kafka_bootstrap: str, tmp_path: Path
) -> None:
    name = wf("cli")
    send(kafka_bootstrap, [stamped(inference_event(name, i, ok=i % 10 != 0)) for i in range(50)])
    collector.wait_for_rows(name, 50)
    config = tmp_path / "cumulus.yaml"
    # The collector's own state dir: the CLI sends the operator token it finds there.
    config.write_text(
        json.dumps({"state_dir": str(collector.state_dir), "collector": {"health_port": collector.port}})
    )
    ensure_dev_operator_token(collector.state_dir)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops.cli.main", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )

    collector.authorized = False  # an outsider: every read and write of the API is refused
    assert collector.get("/api/v1/workflows")[0] == 401
    assert collector.request("POST", f"/api/v1/workflows/{name}/nominate", {"tenant": "acme"})[0] == 401
    collector.authorized = True

    listed = cli("workflows", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [w for w in json.loads(listed.stdout) if w["workflow"] == name]
    assert (row["requests"], row["errors"]) == (50, 5)
    assert row["p95_ms"] > row["p50_ms"] > 0 and row["est_cost"] > 0
    human = cli("workflows")
    assert human.returncode == 0 and name in human.stdout and "P95_MS" in human.stdout
    nominated = cli("nominate", name, "--json", "--reason", "demo")
    assert nominated.returncode == 0, nominated.stderr
    candidate = json.loads(nominated.stdout)
    assert candidate["nominated_by"] == "manual" and candidate["reason"] == "demo"
    assert candidate["train_examples"] + candidate["holdout_examples"] == 45  # the 5 errors are not examples
    listed_candidates = cli("candidates", "--json")
    assert candidate["candidate_id"] in listed_candidates.stdout
    missing = cli("nominate", "no-such-workflow")
    assert missing.returncode == 1 and "no traffic for workflow" in missing.stderr
