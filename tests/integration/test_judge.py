"""The judge end to end through a real broker: shadow pairs in, verdicts and dead letters out.

The judge runs in this process (its ``main`` with a ServiceContext), consuming with a consumer
group of its own from the session's broker; pairs carry a tenant of this test, so pairs other
tests publish on the same topics are graded too but never looked at here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cumulus.config import CumulusConfig, JudgeConfig, KafkaConfig
from cumulus.kafka import codec, topics
from cumulus.logs import get_logger
from cumulus.service import ServiceContext
from cumulus.v1 import common_pb2, events_pb2
from ops.cli.main import main as cli_main
from services.judge.__main__ import main as judge_main
from services.judge.pairs import verdict_id
from tests.integration.records import decode_or_none

pytestmark = pytest.mark.integration
TOOLS = [common_pb2.Tool(name="get_weather", parameters_json='{"properties": {"city": {"type": "string"}}}')]


def output(text: str, *, failed: bool = False) -> events_pb2.ShadowOutput:
    status = common_pb2.STATUS_ERROR if failed else common_pb2.STATUS_OK
    return events_pb2.ShadowOutput(text=text, status=status, latency_ms=12.5, error_message="boom" * failed)


class Traffic:
    def __init__(self) -> None:
        self.tenant = f"t-{uuid.uuid4().hex[:8]}"

    def pair(self, workflow: str, live: str, candidate: str, **kw: Any) -> events_pb2.ShadowPair:
        return events_pb2.ShadowPair(
            meta=codec.new_meta(tenant=self.tenant, workflow=workflow, producer="test"),
            pair_id=kw.get("pair_id", uuid.uuid4().hex),
            request_id=kw.get("request_id", uuid.uuid4().hex),
            adapter_id=kw.get("adapter_id", "ad-1"),
            live=output(live),
            candidate=output(candidate, failed=kw.get("failed", False)),
            tools=TOOLS,
        )


@contextlib.asynccontextmanager
async def running_judge(config: CumulusConfig) -> AsyncIterator[ServiceContext]:
    ctx = ServiceContext(name="judge", config=config, log=get_logger("judge"))
    task = asyncio.create_task(judge_main(ctx))
    try:
        yield ctx
    finally:
        ctx.stopping.set()  # what SIGTERM does
        await asyncio.wait_for(task, 60)


async def collect(
    bootstrap: str, tenant: str, want: int, want_gold: int = 0, timeout_s: float = 60
) -> dict[str, list[Any]]:
    """Verdicts and dead letters of this test, until ``want`` of them arrived.

    Gold verdicts are kept apart and not counted: how many arrive depends on whether the feedback or
    the pair is read first (either order joins, a redelivered pair may join again under one id).
    """
    consumer = AIOKafkaConsumer(
        topics.VERDICTS.name,
        topics.DEADLETTER.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: dict[str, list[Any]] = {"verdicts": [], "gold": [], "dead": []}
    try:
        async with asyncio.timeout(timeout_s):
            while len(found["verdicts"]) + len(found["dead"]) < want or len(found["gold"]) < want_gold:
                for part in (await consumer.getmany(timeout_ms=200)).values():
                    for record in part:
                        event = decode_or_none(record.topic, record.value)
                        if isinstance(event, events_pb2.Verdict) and event.meta.tenant == tenant:
                            found["gold" if event.reference == "gold" else "verdicts"].append(event)
                        elif isinstance(event, events_pb2.DeadLetter) and tenant.encode() in record.value:
                            found["dead"].append(event)
    finally:
        await consumer.stop()
    return found


def judge_config(tmp_path: Path, bootstrap: str, free_port: int) -> CumulusConfig:
    judge = JudgeConfig(health_port=free_port, batch_wait_ms=50, group_id=f"judge-{uuid.uuid4().hex[:6]}")
    return CumulusConfig(state_dir=tmp_path, kafka=KafkaConfig(bootstrap_servers=bootstrap), judge=judge)


async def test_pairs_become_verdicts_poison_goes_to_dead_letter_and_offsets_are_committed(
    kafka_bootstrap: str, tmp_path: Path, unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    traffic = Traffic()
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    label_ok = traffic.pair("wf-label", "Billing", " billing.", request_id="reviewed")
    pairs = [
        label_ok,
        traffic.pair("wf-json", '{"a": 1, "b": 2}', '{"b": 2, "a": 1.0}'),
        traffic.pair("wf-json", '{"a": 1, "b": 2}', '{"a": 1, "b": 3}'),
        traffic.pair("wf-tools", call, "get_weather(city='oslo')"),
        traffic.pair("wf-tools", call, "", failed=True),
        label_ok,  # redelivered
    ]
    malformed = traffic.pair("wf-label", "a", "a", adapter_id="")
    feedback = events_pb2.FeedbackEvent(
        meta=codec.new_meta(tenant=traffic.tenant, workflow="wf-label", producer="test"),
        request_id="reviewed",
        label="good",
    )
    config = judge_config(tmp_path, kafka_bootstrap, unused_tcp_port)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        async with running_judge(config) as ctx:
            for pair in pairs:
                await producer.send_and_wait(topics.SHADOW.name, codec.encode_event(pair), key=b"wf")
            poison = b"not a protobuf " + traffic.tenant.encode()
            await producer.send_and_wait(topics.SHADOW.name, poison, key=b"wf-poison")
            await producer.send_and_wait(topics.SHADOW.name, codec.encode_event(malformed), key=b"wf-label")
            await producer.send_and_wait(topics.FEEDBACK.name, codec.encode_event(feedback), key=b"wf-label")
            found = await collect(kafka_bootstrap, traffic.tenant, want=len(pairs) + 2, want_gold=1)
            ready, checks = await ctx.readiness_report()
            assert ready, checks
    finally:
        await producer.stop()

    by_pair = {v.pair_id: v for v in found["verdicts"]}
    graded = [(by_pair[p.pair_id].grader, by_pair[p.pair_id].passed) for p in pairs]
    assert graded == [
        ("label", True),
        ("json", True),
        ("json", False),
        ("tool_call", True),
        ("tool_call", False),
        ("label", True),
    ]
    assert json.loads(by_pair[pairs[2].pair_id].details_json)["wrong"] == ["b"]
    assert by_pair[pairs[4].pair_id].candidate_error
    twice = [v for v in found["verdicts"] if v.pair_id == label_ok.pair_id]
    assert len(twice) == 2 and twice[0].verdict_id == twice[1].verdict_id == verdict_id(
        label_ok.pair_id, "label"
    )
    assert twice[0].meta.event_id == twice[0].verdict_id  # consumers dedupe on it
    # The review of "reviewed" makes its pair's gold verdict: the candidate's " billing." against "good".
    assert found["gold"] and {(v.pair_id, v.request_id, v.verdict_id) for v in found["gold"]} == {
        (label_ok.pair_id, "reviewed", found["gold"][0].verdict_id)
    }
    assert found["gold"][0].verdict_id != twice[0].verdict_id and found["gold"][0].live_passed
    reasons = sorted(d.reason for d in found["dead"])
    assert (
        len(reasons) == 2
        and "ShadowPair has no adapter_id" in reasons[0]
        and "not a valid ShadowPair" in reasons[1]
    )
    assert {d.consumer for d in found["dead"]} == {"judge"}

    # Drained on stop: the group's committed offsets reach the end of the topic.
    await _assert_committed_to_end(kafka_bootstrap, config.judge.group_id)

    # The verdicts and the review are in the store: calibration sees them.
    monkeypatch.setenv("CUMULUS_STATE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["judge", "calibrate", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["graders"][0]["grader"] == "label" and report["graders"][0]["reviewed"] == 1
    assert report["feedback_events"] >= 1


async def _assert_committed_to_end(bootstrap: str, group_id: str) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        numbers = consumer.partitions_for_topic(topics.SHADOW.name) or set()
        partitions = [TopicPartition(topics.SHADOW.name, p) for p in sorted(numbers)]
        ends = await consumer.end_offsets(partitions)
        committed = {tp: await consumer.committed(tp) for tp in partitions}
        assert committed == ends
    finally:
        await consumer.stop()
