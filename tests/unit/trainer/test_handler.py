"""The trainer's candidate loop with injected fakes for Kafka: outcomes, failures, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from google.protobuf.message import Message

from cumulus.artifacts import ArtifactStore, manifest_sha256
from cumulus.config import CumulusConfig, StudentConfig, TrainerConfig, TritonConfig
from cumulus.kafka import codec, topics
from cumulus.kafka.topics import TopicSpec
from cumulus.lora import lora_task_id
from cumulus.models import TINY_LLAMA
from cumulus.v1 import events_pb2
from services.collector.erased_datasets import rewrite_datasets
from services.trainer.erasures import tainted_by_erasure
from services.trainer.handler import TrainerHandler
from tests.unit.trainer.conftest import SHARED_MODELS, WORKFLOW


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[tuple[str, Message]] = []

    def publish(self, spec: TopicSpec, event: Message) -> None:
        self.events.append((spec.name, event))

    async def flush(self, timeout_s: float) -> bool:
        return True

    def adapter_events(self) -> list[events_pb2.AdapterEvent]:
        return [e for topic, e in self.events if topic == topics.ADAPTERS.name]  # type: ignore[misc]


def _record(value: bytes, offset: int = 0) -> Any:
    return SimpleNamespace(
        topic=topics.CANDIDATES.name, partition=0, offset=offset, key=WORKFLOW.encode(), value=value
    )


def _candidate(dataset_uri: str, candidate_id: str = "cand-1", parent: str = "") -> bytes:
    event = events_pb2.CandidateEvent(
        parent_adapter_id=parent,
        meta=codec.new_meta(tenant="t-test", workflow=WORKFLOW, producer="test"),
        candidate_id=candidate_id,
        dataset_id="ds-test",
        dataset_uri=dataset_uri,
        base_model="tiny-llama",
    )
    return codec.encode_event(event)


def _worker(tmp_path: Path, recipe: Path) -> tuple[TrainerHandler, FakePublisher]:
    config = CumulusConfig(
        state_dir=tmp_path,
        model_cache_dir=SHARED_MODELS,
        triton=TritonConfig(live_model=TINY_LLAMA, small_model=TINY_LLAMA),
        trainer=TrainerConfig(
            recipe=recipe,
            progress_interval_s=0,
            gate_max_examples=2,
            gate_max_new_tokens=4,
            # One model plays live and student here: say what each costs, as a price list would.
            students=(StudentConfig(model=TINY_LLAMA, cost_per_token=1.0),),
            live_cost_per_token=10.0,
        ),
    )
    publisher = FakePublisher()
    return TrainerHandler(publisher=publisher, config=config), publisher  # type: ignore[arg-type]


def test_a_candidate_becomes_a_registered_adapter_announced_with_its_progress(
    tmp_path: Path, dataset_dir: Path, write_recipe: Callable[..., Path]
) -> None:
    worker, publisher = _worker(tmp_path, write_recipe(train={"max_steps": 2}))
    uri = ArtifactStore(tmp_path / "artifacts").uri("datasets", WORKFLOW, "ds-test")
    assert asyncio.run(worker.handle([_record(_candidate(uri))], asyncio.Event()))
    events = publisher.adapter_events()
    statuses = [e.status for e in events]
    assert statuses[0] == events_pb2.ADAPTER_STATUS_TRAINING and events[0].progress == 0.0
    assert events_pb2.ADAPTER_STATUS_TRAINING in statuses[1:-1]  # progress while it trained
    outcome = events[-1]
    assert outcome.status in (events_pb2.ADAPTER_STATUS_READY, events_pb2.ADAPTER_STATUS_REJECTED)
    assert outcome.lora_task_id == lora_task_id(outcome.adapter_id) and outcome.metrics["steps"] == 2
    assert outcome.artifact_uri.endswith(f"/adapters/{WORKFLOW}/{outcome.adapter_id}")
    folder = Path(outcome.artifact_uri.removeprefix("file://"))
    assert outcome.manifest_sha256 == manifest_sha256(folder)  # what the route will pin
    assert outcome.meta.tenant == "t-test" and outcome.candidate_id == "cand-1"
    assert worker.status()["recent"][0]["adapter_id"] == outcome.adapter_id and worker.status()["job"] is None


def test_a_job_that_cannot_train_is_reported_failed_with_the_reason(
    tmp_path: Path, write_recipe: Callable[..., Path]
) -> None:
    worker, publisher = _worker(tmp_path, write_recipe())
    missing = ArtifactStore(tmp_path / "artifacts").uri("datasets", WORKFLOW, "ds-gone")
    assert asyncio.run(worker.handle([_record(_candidate(missing, "cand-2"))], asyncio.Event()))
    outcome = publisher.adapter_events()[-1]
    assert outcome.status == events_pb2.ADAPTER_STATUS_FAILED
    assert "ds-gone" in outcome.error and "manifest" in outcome.error


def test_an_unreadable_candidate_goes_to_the_dead_letter_topic(
    tmp_path: Path, write_recipe: Callable[..., Path]
) -> None:
    worker, publisher = _worker(tmp_path, write_recipe())
    assert asyncio.run(worker.handle([_record(b"\xff not a candidate", offset=7)], asyncio.Event()))
    ((topic, letter),) = publisher.events
    assert topic == topics.DEADLETTER.name
    assert letter.source_offset == 7 and "unusable candidate" in letter.reason  # type: ignore[attr-defined]


def test_no_student_cheap_enough_rejects_the_candidate_untrained_and_says_why(
    tmp_path: Path, dataset_dir: Path, write_recipe: Callable[..., Path]
) -> None:
    worker, publisher = _worker(tmp_path, write_recipe(train={"max_steps": 2}))
    worker.config = worker.config.model_copy(
        update={"trainer": worker.trainer.model_copy(update={"live_cost_per_token": 3.0})}
    )
    worker.students.config = worker.config
    uri = ArtifactStore(tmp_path / "artifacts").uri("datasets", WORKFLOW, "ds-test")
    assert asyncio.run(worker.handle([_record(_candidate(uri, "cand-3"))], asyncio.Event()))
    (outcome,) = publisher.adapter_events()  # no TRAINING event: nothing was trained
    assert outcome.status == events_pb2.ADAPTER_STATUS_REJECTED and not outcome.base_model
    assert "no student to train" in outcome.error and "tiny-llama costs 1/3.0 of live" in outcome.error


def test_the_next_version_starts_from_the_promoted_one(
    tmp_path: Path, dataset_dir: Path, write_recipe: Callable[..., Path]
) -> None:
    worker, publisher = _worker(tmp_path, write_recipe(train={"max_steps": 2}))
    uri = ArtifactStore(tmp_path / "artifacts").uri("datasets", WORKFLOW, "ds-test")
    assert asyncio.run(worker.handle([_record(_candidate(uri))], asyncio.Event()))
    v1 = publisher.adapter_events()[-1]
    assert v1.metrics["warm_start"] == 0.0
    candidate = _candidate(uri, "cand-2", parent=v1.adapter_id)
    assert asyncio.run(worker.handle([_record(candidate, offset=1)], asyncio.Event()))
    v2 = publisher.adapter_events()[-1]
    assert v2.candidate_id == "cand-2" and v2.metrics["warm_start"] == 1.0
    manifest = ArtifactStore(tmp_path / "artifacts").verify("adapters", WORKFLOW, v2.adapter_id)
    assert manifest.fields["warm_started_from"] == v1.adapter_id
    # A parent that is not in the store (or of another student) is no start: trained from scratch.
    orphan = _candidate(uri, "cand-3", parent="ad-gone")
    assert asyncio.run(worker.handle([_record(orphan, offset=2)], asyncio.Event()))
    assert publisher.adapter_events()[-1].metrics["warm_start"] == 0.0


def test_a_job_whose_rows_are_erased_while_it_trains_is_not_served(
    tmp_path: Path, dataset_dir: Path, write_recipe: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure that stopped waiting for the job (privacy.erasure_training_wait_s) rewrote its
    dataset meanwhile: the adapter it makes holds the erased rows and must not roll out."""
    store = ArtifactStore(tmp_path / "artifacts")

    async def job_during_an_erasure(*_: Any) -> dict[str, Any]:
        await rewrite_datasets(store, "t-test", {"r0", "r1"}, False, "er-during")
        return {"status": "READY", "gate_passed": True, "offline_score": 0.9}

    monkeypatch.setattr("services.trainer.handler.run_job", job_during_an_erasure)
    worker, publisher = _worker(tmp_path, write_recipe(train={"max_steps": 2}))
    uri = store.uri("datasets", WORKFLOW, "ds-test")
    assert asyncio.run(worker.handle([_record(_candidate(uri))], asyncio.Event()))
    outcome = publisher.adapter_events()[-1]
    assert outcome.status == events_pb2.ADAPTER_STATUS_REJECTED and not outcome.gate_passed
    assert "erasure er-during removed 2 rows of dataset ds-test" in outcome.error


def test_a_version_tainted_by_an_erasure_seeds_no_retrain(
    tmp_path: Path, dataset_dir: Path, write_recipe: Callable[..., Path]
) -> None:
    """v1's dataset lost rows to an erasure after v1 was trained: its weights may hold them, so
    v2 (the erasure's retrain) starts fresh instead of from v1."""
    store = ArtifactStore(tmp_path / "artifacts")
    worker, publisher = _worker(tmp_path, write_recipe(train={"max_steps": 2}))
    uri = store.uri("datasets", WORKFLOW, "ds-test")
    assert asyncio.run(worker.handle([_record(_candidate(uri))], asyncio.Event()))
    v1 = publisher.adapter_events()[-1]
    assert store.verify("adapters", WORKFLOW, v1.adapter_id).fields["dataset_erasures"] == 0
    asyncio.run(rewrite_datasets(store, "t-test", {"r3"}, False, "er-after"))

    candidate = _candidate(uri, "cand-2", parent=v1.adapter_id)
    assert asyncio.run(worker.handle([_record(candidate, offset=1)], asyncio.Event()))
    v2 = publisher.adapter_events()[-1]
    assert v2.metrics["warm_start"] == 0.0
    fields = store.verify("adapters", WORKFLOW, v2.adapter_id).fields
    assert fields["parent_adapter_id"] == v1.adapter_id and fields["warm_started_from"] == ""
    # v2 was specified on the rewritten dataset: it is clean, and may seed v3.
    assert fields["dataset_erasures"] == 1
    assert tainted_by_erasure(store, WORKFLOW, v2.adapter_id) == ""
    assert "lost rows to an erasure" in tainted_by_erasure(store, WORKFLOW, v1.adapter_id)
