"""The trainer through a real broker: killed mid-job, restarted, the candidate is retried, not lost;
and a workflow whose smallest student plateaus is trained on the next one of the ladder.

The trainer runs as a real process (``python -m services.trainer``) on a broker of this test's own,
so candidates other tests publish never reach it. It is SIGKILLed while its job trains; the job's
process gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and saves a checkpoint. The restarted
trainer gets the uncommitted candidate again, resumes from the checkpoint, publishes the outcome
and only then commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from cumulus.artifacts import ArtifactStore
from cumulus.kafka import codec, topics
from cumulus.operators import auth_headers, ensure_dev_operator_token
from cumulus.v1 import events_pb2
from ops.stack.probes import http_json
from tests.integration.kafka_fixtures import RestartableKafka
from tests.unit.trainer.conftest import SHARED_MODELS, WORKFLOW, write_dataset

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
GROUP = "trainer-it"
OUTCOMES = {
    events_pb2.ADAPTER_STATUS_READY,
    events_pb2.ADAPTER_STATUS_REJECTED,
    events_pb2.ADAPTER_STATUS_FAILED,
}
RECIPE = {
    "lora": {"rank": 4, "alpha": 8},
    "data": {"max_seq_len": 128},
    "optim": {"lr": 1.0e-3, "warmup_steps": 1},
    # Long enough to be killed mid-way (a step of tiny-llama takes a few ms).
    "train": {"batch_size": 1, "epochs": 100, "max_steps": 300, "eval_every": 0, "early_stopping_patience": 0,
              "checkpoint_every": 5},
    "precision": "fp32",
    "device": "cpu",
}  # fmt: skip


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    write_dataset(tmp_path / "artifacts", "ds-it")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    return tmp_path


@contextlib.contextmanager
def trainer_process(
    state_dir: Path, bootstrap: str, port: int, **overrides: str
) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULUS_")}
    env.update(
        CUMULUS_STATE_DIR=str(state_dir),
        CUMULUS_MODEL_CACHE_DIR=str(SHARED_MODELS),
        CUMULUS_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        CUMULUS_TRAINER__HEALTH_PORT=str(port),
        CUMULUS_TRAINER__GROUP_ID=GROUP,
        CUMULUS_TRAINER__RECIPE=str(state_dir / "recipe.yaml"),
        CUMULUS_TRAINER__PROGRESS_INTERVAL_S="0",
        CUMULUS_TRAINER__GATE_MAX_EXAMPLES="4",
        CUMULUS_TRAINER__GATE_MAX_NEW_TOKENS="4",
        PYTHONPATH=str(REPO),
        **overrides,
    )
    with (state_dir / "trainer.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.trainer"],
            cwd=state_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its job process joins the group: teardown stops both
        )
    try:
        yield process
    finally:
        # SIGTERM the group (trainer and job) and give the job time to checkpoint; kill what is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(60)
        deadline = time.monotonic() + 60
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _group_alive(pgid: int) -> bool:
    return bool(subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).stdout.strip())


async def next_event(
    consumer: AIOKafkaConsumer, want: Any, timeout_s: float = 180
) -> events_pb2.AdapterEvent:
    async with asyncio.timeout(timeout_s):
        while True:
            record = await consumer.getone()
            event = codec.decode_as(events_pb2.AdapterEvent, record.value, topic=record.topic)
            if want(event):
                return event


async def test_trainer_killed_mid_job_retries_the_candidate_and_resumes(
    restartable_kafka: RestartableKafka, state_dir: Path, unused_tcp_port: int
) -> None:
    bootstrap = restartable_kafka.bootstrap
    store = ArtifactStore(state_dir / "artifacts")
    candidate = events_pb2.CandidateEvent(
        meta=codec.new_meta(tenant="t-it", workflow=WORKFLOW, producer="test"),
        candidate_id=f"cand-{uuid.uuid4().hex[:6]}",
        nominated_by="manual",
        dataset_id="ds-it",
        dataset_uri=store.uri("datasets", WORKFLOW, "ds-it"),
        train_examples=40,
        holdout_examples=8,
        base_model="tiny-llama",
    )
    events = AIOKafkaConsumer(topics.ADAPTERS.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await events.start()
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.CANDIDATES.name,
            codec.encode_event(candidate),
            key=codec.encode_key(candidate.meta.tenant, WORKFLOW),
        )
        ensure_dev_operator_token(state_dir)
        with trainer_process(state_dir, bootstrap, unused_tcp_port) as first:
            training = await next_event(events, lambda e: e.metrics.get("step", 0) >= 10)
            assert training.status == events_pb2.ADAPTER_STATUS_TRAINING and 0 < training.progress < 0.85
            url, headers = f"http://127.0.0.1:{unused_tcp_port}/status", auth_headers(state_dir)
            status, body = await asyncio.to_thread(http_json, url, 2.0, headers)
            assert status == 200 and body["job"]["adapter_id"] == training.adapter_id
            first.send_signal(signal.SIGKILL)  # a crash: no chance to tidy up or commit
            first.wait(30)
        checkpoint = state_dir / "trainer" / "jobs" / training.adapter_id / "checkpoint" / "checkpoint.pt"
        with trainer_process(state_dir, bootstrap, unused_tcp_port):
            restarted = await next_event(events, lambda e: e.status == events_pb2.ADAPTER_STATUS_TRAINING
                                         and e.progress == 0.0)  # fmt: skip
            assert (
                restarted.adapter_id == training.adapter_id
                and restarted.candidate_id == candidate.candidate_id
            )
            resumed = await next_event(events, lambda e: "step" in e.metrics)
            assert resumed.metrics["step"] > 5  # continued from the checkpoint, not from step 1
            outcome = await next_event(events, lambda e: e.status in OUTCOMES)
            assert outcome.adapter_id == training.adapter_id
            assert outcome.status != events_pb2.ADAPTER_STATUS_FAILED, outcome.error
            assert outcome.lora_task_id and outcome.artifact_uri.endswith(training.adapter_id)
            assert outcome.metrics["steps"] == 300
            assert checkpoint.is_file()
            committed = await committed_offsets(bootstrap)
            async with asyncio.timeout(30):
                while sum(committed.values()) != 1:  # the commit follows the acknowledged outcome
                    await asyncio.sleep(0.2)
                    committed = await committed_offsets(bootstrap)
    finally:
        await producer.stop()
        await events.stop()


async def committed_offsets(bootstrap: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(GROUP)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topics.CANDIDATES.name}


def ticket_candidate(store: ArtifactStore) -> events_pb2.CandidateEvent:
    """A nomination as the collector makes one: it names the first student (triton.small_model)."""
    return events_pb2.CandidateEvent(
        meta=codec.new_meta(tenant="t-it", workflow=WORKFLOW, producer="test"),
        candidate_id=f"cand-{uuid.uuid4().hex[:6]}",
        dataset_id="ds-it",
        dataset_uri=store.uri("datasets", WORKFLOW, "ds-it"),
        base_model="tiny-llama",
    )


async def test_a_student_that_plateaus_below_the_gate_hands_the_workflow_to_the_next(
    restartable_kafka: RestartableKafka, state_dir: Path, unused_tcp_port: int
) -> None:
    short = RECIPE | {"train": RECIPE["train"] | {"epochs": 1, "max_steps": 2, "checkpoint_every": 0}}
    (state_dir / "recipe.yaml").write_text(yaml.safe_dump(short))
    ladder = [
        {"model": "tiny-llama", "cost_per_token": 1.0},
        {"model": "smollm2-135m-instruct", "cost_per_token": 20.0},
        {"model": "qwen2.5-coder-0.5b-instruct", "cost_per_token": 60.0},  # 1/1.7 of live: never
    ]
    overrides = {
        "CUMULUS_TRITON__SMALL_MODEL": "tiny-llama",
        "CUMULUS_TRAINER__STUDENTS": json.dumps(ladder),
        "CUMULUS_TRAINER__LIVE_COST_PER_TOKEN": "100",
        "CUMULUS_TRAINER__GATE_THRESHOLD": "1.0",  # nobody passes: every attempt is rejected
        "CUMULUS_TRAINER__PLATEAU_MIN_GAIN": "1.0",  # so two attempts make a plateau
    }
    bootstrap = restartable_kafka.bootstrap
    store = ArtifactStore(state_dir / "artifacts")
    events = AIOKafkaConsumer(topics.ADAPTERS.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await events.start()
    await producer.start()
    try:
        with trainer_process(state_dir, bootstrap, unused_tcp_port, **overrides):
            outcomes = []
            for _ in range(5):
                candidate = ticket_candidate(store)
                key = codec.encode_key(candidate.meta.tenant, WORKFLOW)
                await producer.send_and_wait(topics.CANDIDATES.name, codec.encode_event(candidate), key=key)
                outcomes.append(await next_event(events, lambda e, c=candidate: e.status in OUTCOMES
                                                 and e.candidate_id == c.candidate_id))  # fmt: skip
    finally:
        await producer.stop()
        await events.stop()
    tiny, small = "tiny-llama", "smollm2-135m-instruct"
    assert [o.base_model for o in outcomes[:4]] == [tiny, tiny, small, small]
    assert all(o.status == events_pb2.ADAPTER_STATUS_REJECTED for o in outcomes), [o.error for o in outcomes]
    last = outcomes[4]  # both allowed students plateaued; the third is too dear to try
    assert not last.base_model and "no student to train" in last.error
    assert "qwen2.5-coder-0.5b-instruct costs 1/1.7 of live" in last.error
