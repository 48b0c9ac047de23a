"""Redaction before storage and erasure on a real embedded chDB and a real artifact store.

Two users of one tenant send requests holding seeded personal data; they are captured through
the collector's own path (decode, redact, tombstone screen, row, insert), exported into a dataset
with the real export, and an adapter is trained (as rows say) on it. Erasing one user removes
their rows from every table (counted with FINAL), rewrites the dataset without them, taints the
adapter and asks for its retrain; the other user's rows stay; a late event of the erased user is
dropped on arrival; a second erasure finds nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cumulus.artifacts import ArtifactStore, verify_dir
from cumulus.config import ExportConfig, PrivacyConfig
from cumulus.errors import InvalidArgument, NotFound
from cumulus.kafka import codec, topics
from cumulus.privacy.policy import TenantPrivacy
from cumulus.v1 import common_pb2, events_pb2
from services.collector.erasure import Eraser, ErasureContext, Selector, capture_screen
from services.collector.export import build_dataset, read_sources, write_dataset
from services.collector.rows import CAPTURES
from services.collector.store import ClickHouseStore
from services.collector.tombstones import Tombstones

pytestmark = pytest.mark.integration
TENANT, WORKFLOW = "acme", "tickets"
KEY = b"erasure-test-key-0123456789abcdef"
USERS = {"ana": "ana.lima@example.org", "bo": "bo.chen@example.net"}


@pytest.fixture
async def loop_parts(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    db = ClickHouseStore(f"chdb://{tmp_path / 'chdb'}", "erasure_test")
    await db.open()
    privacy = TenantPrivacy(PrivacyConfig(), KEY)
    tombstones = Tombstones(db, KEY)
    renominated: list[tuple[str, str]] = []

    async def renominate(tenant: str, workflow: str, reason: str) -> str:
        renominated.append((tenant, workflow))
        return "cand-retrain"

    context = ErasureContext(KEY, ArtifactStore(tmp_path / "artifacts"), tmp_path / "receipts",
                             lambda _: "retrain", renominate)  # fmt: skip
    try:
        yield {
            "db": db,
            "screen": capture_screen(privacy, tombstones),
            "eraser": Eraser(db, tombstones, context),
            "artifacts": context.artifacts,
            "renominated": renominated,
            "receipts": tmp_path / "receipts",
        }
    finally:
        await db.close()


def inference(user: str, i: int) -> events_pb2.InferenceEvent:
    email = USERS[user]
    return events_pb2.InferenceEvent(
        meta=codec.new_meta(tenant=TENANT, workflow=WORKFLOW, producer="gateway"),
        request_id=f"req-{user}-{i}",
        session_key=f"session-{user}",
        messages=[
            common_pb2.ChatMessage(
                role="user", content=f"{user} asks ({i}): I am {email}, card 4111 1111 1111 1111"
            )
        ],
        response_text=f'{{"team": "billing", "contact": "{email}"}}',
        metadata={"user": user},
        route=common_pb2.Route(target=common_pb2.RouteTarget(model="live"), mode=common_pb2.ROUTE_MODE_LIVE),
        status=common_pb2.STATUS_OK,
    )


async def capture(parts: dict[str, Any], spec: topics.TopicSpec, events: list[Any], token: str) -> int:
    """Through the collector's own path: decode, screen (redact, tombstones), row, insert."""
    capture = CAPTURES[spec.name]
    rows = [capture.row(codec.encode_event(e), parts["screen"]) for e in events]
    kept = [r for r in rows if r is not None]
    if kept:
        await parts["db"].insert(capture.table, kept, token=token)
    return len(kept)


async def count(db: ClickHouseStore, table: str, where: str = "1") -> int:
    rows = await db.query(f"SELECT count() AS n FROM `{db.database}`.`{table}` FINAL WHERE {where}")
    return int(rows[0]["n"])


async def test_erasing_a_user_reaches_every_table_dataset_and_adapter(loop_parts: dict[str, Any]) -> None:
    db: ClickHouseStore = loop_parts["db"]
    events = [inference(user, i) for user in USERS for i in range(6)]
    assert await capture(loop_parts, topics.INFERENCE, events, "t-inference") == 12
    feedback = events_pb2.FeedbackEvent(
        meta=codec.new_meta(tenant=TENANT, workflow=WORKFLOW, producer="gateway"),
        request_id="req-ana-0",
        correction=f'{{"team": "refunds", "contact": "{USERS["ana"]}"}}',
    )
    await capture(loop_parts, topics.FEEDBACK, [feedback], "t-feedback")

    # Stored redacted: no raw address anywhere, placeholders and counts instead.
    stored = await db.query(
        f"SELECT messages, response, session_key, metadata, redacted FROM `{db.database}`.requests"
    )
    assert not [r for r in stored if any(e in json.dumps(r, default=str) for e in USERS.values())]
    assert all("<EMAIL_" in r["messages"] and r["redacted"] == {"EMAIL": 2, "CARD": 1} for r in stored)
    assert all(
        r["session_key"].startswith("sess-") and r["metadata"]["user"].startswith("user-") for r in stored
    )

    requests, notes = await read_sources(db, TENANT, WORKFLOW, ExportConfig())
    exported = build_dataset(requests, notes, ExportConfig())
    dataset = write_dataset(loop_parts["artifacts"], TENANT, WORKFLOW, exported, "smollm2", ExportConfig())
    adapter = events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant=TENANT, workflow=WORKFLOW, producer="trainer"),
        adapter_id="ad-1", dataset_id=dataset.id, status=events_pb2.ADAPTER_STATUS_READY, gate_passed=True,
    )  # fmt: skip
    promoted = events_pb2.RolloutEvent(
        meta=codec.new_meta(tenant=TENANT, workflow=WORKFLOW, producer="router"),
        adapter_id="ad-1", from_state="canary", to_state="promoted",
    )  # fmt: skip
    await capture(loop_parts, topics.ADAPTERS, [adapter], "t-adapter")
    await capture(loop_parts, topics.ROLLOUTS, [promoted], "t-rollout")

    receipt = await loop_parts["eraser"].erase(Selector.from_json({"tenant": TENANT, "users": ["ana"]}))

    assert receipt["requests_found"] == 6 and receipt["clickhouse"]["requests"] == {
        "removed": 6,
        "remaining": 0,
    }
    assert receipt["clickhouse"]["feedback"]["removed"] == 1
    assert await count(db, "requests", "request_id LIKE 'req-ana-%'") == 0
    assert await count(db, "requests", "request_id LIKE 'req-bo-%'") == 6  # the other user's rows stay
    assert await count(db, "feedback") == 0
    [rewritten] = receipt["datasets"]
    assert rewritten["dataset_id"] == dataset.id, rewritten
    assert rewritten["removed"] == 6, rewritten
    folder = loop_parts["artifacts"].path("datasets", WORKFLOW, dataset.id)
    manifest = verify_dir(folder)  # rewritten whole: the files match the new manifest
    lines = [
        json.loads(line)
        for f in ("train.jsonl", "holdout.jsonl")
        for line in (folder / f).read_text().splitlines()
    ]
    assert len(lines) == 6 and all(line["request_id"].startswith("req-bo-") for line in lines)
    assert manifest.fields["erasures"][0]["erasure_id"] == receipt["erasure_id"]
    [tainted] = receipt["adapters"]
    assert tainted["adapter_id"] == "ad-1" and tainted["action"] == "retrain: nominated again as cand-retrain"
    assert loop_parts["renominated"] == [(TENANT, WORKFLOW)]
    kept = json.loads((loop_parts["receipts"] / TENANT / f"{receipt['erasure_id']}.json").read_text())
    assert kept["erasure_id"] == receipt["erasure_id"]

    # A late event of an erased request (still in Kafka, or a spool) does not bring it back;
    # what the same user does after the erasure is new data.
    later = inference("ana", 99)
    assert await capture(loop_parts, topics.INFERENCE, [inference("ana", 1), later], "t-late") == 1
    late_feedback = events_pb2.FeedbackEvent(meta=feedback.meta, request_id="req-ana-2", comment="again")
    assert await capture(loop_parts, topics.FEEDBACK, [late_feedback], "t-late-fb") == 0

    again = await loop_parts["eraser"].erase(
        Selector.from_json({"tenant": TENANT, "requests": ["req-ana-3"]})
    )
    assert again["nothing_found"] and "nothing left to erase" in again["note"]
    assert again["clickhouse"]["requests"]["removed"] == 0 and not again["datasets"]


async def test_bad_erasures_say_what_to_fix(loop_parts: dict[str, Any]) -> None:
    with pytest.raises(NotFound, match="tenant 'nobody' has no captured data"):
        await loop_parts["eraser"].erase(Selector.from_json({"tenant": "nobody", "users": ["x"]}))
    for body, field in (
        ({"users": ["x"]}, "tenant"),
        ({"tenant": TENANT}, "selector"),
        ({"tenant": TENANT, "all": True, "users": ["x"]}, "selector"),
        ({"tenant": TENANT, "users": "ana"}, "users"),
    ):
        with pytest.raises(InvalidArgument) as error:
            Selector.from_json(body)
        assert error.value.field == field


async def test_erasing_a_whole_tenant_retires_what_serves_and_leaves_others_be(
    loop_parts: dict[str, Any],
) -> None:
    db: ClickHouseStore = loop_parts["db"]
    await capture(loop_parts, topics.INFERENCE, [inference("ana", 1)], "t-acme")
    globex = inference("bo", 1)
    globex.meta.tenant = "globex"
    adapter = events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant="globex", workflow=WORKFLOW, producer="trainer"),
        adapter_id="ad-g", dataset_id="ds-g", status=events_pb2.ADAPTER_STATUS_READY,
    )  # fmt: skip
    promoted = events_pb2.RolloutEvent(
        meta=codec.new_meta(tenant="globex", workflow=WORKFLOW, producer="router"),
        adapter_id="ad-g", from_state="canary", to_state="promoted",
    )  # fmt: skip
    await capture(loop_parts, topics.INFERENCE, [globex], "t-globex")
    await capture(loop_parts, topics.ADAPTERS, [adapter], "t-globex-adapter")
    await capture(loop_parts, topics.ROLLOUTS, [promoted], "t-globex-rollout")

    receipt = await loop_parts["eraser"].erase(Selector.from_json({"tenant": "globex", "all": True}))

    [retired] = receipt["adapters"]
    assert retired["adapter_id"] == "ad-g" and retired["action"].startswith("retire")
    for table in ("requests", "adapters", "rollout_events"):
        assert await count(db, table, "tenant = 'globex'") == 0, table
    assert await count(db, "requests", "tenant = 'acme'") == 1
    assert loop_parts["renominated"] == []  # nothing left to retrain on
    late = inference("bo", 2)
    late.meta.tenant = "globex"
    late.meta.occurred_at.FromSeconds(late.meta.occurred_at.seconds - 60)  # from before the erasure
    assert await capture(loop_parts, topics.INFERENCE, [late], "t-globex-late") == 0


async def test_an_erasure_during_training_waits_then_leaves_the_job_to_the_trainer(
    loop_parts: dict[str, Any],
) -> None:
    """The job on an affected dataset outlasts the wait: the receipt says it waited and for what,
    the workflow is nominated again (retrain), and the trainer rejects the job when it ends
    (tests/unit/trainer/test_handler.py)."""
    events = [inference(user, i) for user in USERS for i in range(6)]
    await capture(loop_parts, topics.INFERENCE, events, "t-inference")
    requests, notes = await read_sources(loop_parts["db"], TENANT, WORKFLOW, ExportConfig())
    dataset = write_dataset(
        loop_parts["artifacts"], TENANT, WORKFLOW, build_dataset(requests, notes, ExportConfig()), "smollm2",
        ExportConfig(),
    )  # fmt: skip
    training = events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant=TENANT, workflow=WORKFLOW, producer="trainer"),
        adapter_id="ad-training", dataset_id=dataset.id, status=events_pb2.ADAPTER_STATUS_TRAINING,
    )  # fmt: skip
    await capture(loop_parts, topics.ADAPTERS, [training], "t-training")
    eraser: Eraser = loop_parts["eraser"]
    eraser.context = dataclasses.replace(eraser.context, training_wait_s=0.5)

    receipt = await eraser.erase(Selector.from_json({"tenant": TENANT, "users": ["bo"]}))

    [waited] = receipt["waited_for_training"]
    assert waited["adapter_id"] == "ad-training" and not waited["ended"] and waited["waited_s"] >= 0.5
    [tainted] = receipt["adapters"]
    assert tainted["action"] == (
        "still training after the wait: the trainer rejects it when it ends; "
        "retrain: nominated again as cand-retrain"
    )
    assert loop_parts["renominated"] == [(TENANT, WORKFLOW)]
