"""Retention on a real embedded chDB and a real artifact store: TTL clauses per table and per
tenant are accepted and expire rows as parts merge; expired datasets and retired adapters leave the
artifact store while what an adapter in use was trained on stays."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cumulus.artifacts import ArtifactStore
from cumulus.config import PrivacyConfig
from cumulus.kafka import codec, topics
from cumulus.v1 import common_pb2, events_pb2
from services.collector.retention import apply_ttls, expire_artifacts, ttl_expression
from services.collector.rows import CAPTURES
from services.collector.store import ClickHouseStore

pytestmark = pytest.mark.integration
PRIVACY = PrivacyConfig(tenants={"lab": {"retention_days": 7}, "o'hara": {"retention_days": 30}})  # type: ignore[dict-item]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[ClickHouseStore]:
    store = ClickHouseStore(f"chdb://{tmp_path / 'chdb'}", "retention_test")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def test_a_tenants_own_retention_is_one_case_of_one_expression_with_names_escaped() -> None:
    expression = ttl_expression("requests", PRIVACY)
    assert expression == (
        "occurred_at + toIntervalDay(multiIf(tenant = 'lab', 7, tenant = 'o\\'hara', 30, 90))"
    )
    assert ttl_expression("drift_signals", PRIVACY) == "occurred_at + toIntervalDay(365)"
    assert ttl_expression("adapters", PRIVACY) is None  # the system's history is kept


def inference(tenant: str, request_id: str, days_ago: float) -> bytes:
    event = events_pb2.InferenceEvent(
        meta=codec.new_meta(tenant=tenant, workflow="wf", producer="gateway"),
        request_id=request_id,
        response_text="ok",
        route=common_pb2.Route(target=common_pb2.RouteTarget(model="live"), mode=common_pb2.ROUTE_MODE_LIVE),
        status=common_pb2.STATUS_OK,
    )
    event.meta.occurred_at.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago))
    return codec.encode_event(event)


async def test_rows_past_their_tenants_retention_expire(db: ClickHouseStore) -> None:
    statements = await apply_ttls(db, PRIVACY)
    assert len(statements) == 5  # requests, verdicts, feedback, drift signals, audit answers
    capture = CAPTURES[topics.INFERENCE.name]
    rows = [
        capture.row(inference(tenant, f"{tenant}-{days}", days))
        for tenant in ("lab", "acme")
        for days in (1, 10, 100)
    ]
    await db.insert(capture.table, [r for r in rows if r is not None], token="t-retention")
    await db.execute(f"OPTIMIZE TABLE `{db.database}`.requests FINAL")  # a merge applies the TTL
    left = await db.query(f"SELECT request_id FROM `{db.database}`.requests FINAL ORDER BY request_id")
    assert [r["request_id"] for r in left] == ["acme-1", "acme-10", "lab-1"]


async def test_expired_datasets_and_retired_adapters_leave_the_artifact_store(
    db: ClickHouseStore, tmp_path: Path
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    for dataset_id in ("ds-a-unused", "ds-b-in-use", "ds-c-unused"):
        with store.create("datasets", "wf", dataset_id) as writer:
            writer.write_lines("train.jsonl", ["{}"])
            writer.commit({"tenant": "acme"})
    for adapter_id in ("ad-serving", "ad-rejected"):
        with store.create("adapters", "wf", adapter_id) as writer:
            writer.write_bytes("adapter_model.safetensors", b"0")
            writer.commit({"tenant": "acme"})
    adapters = CAPTURES[topics.ADAPTERS.name]
    rollouts = CAPTURES[topics.ROLLOUTS.name]
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)

    def adapter(adapter_id: str, dataset_id: str, status: int) -> bytes:
        event = events_pb2.AdapterEvent(
            meta=codec.new_meta(tenant="acme", workflow="wf", producer="trainer"),
            adapter_id=adapter_id, dataset_id=dataset_id, status=status,  # type: ignore[arg-type]
        )  # fmt: skip
        event.meta.occurred_at.FromDatetime(long_ago)
        return codec.encode_event(event)

    serving = adapter("ad-serving", "ds-b-in-use", events_pb2.ADAPTER_STATUS_READY)
    rejected = adapter("ad-rejected", "ds-a-unused", events_pb2.ADAPTER_STATUS_REJECTED)
    await db.insert(adapters.table, [adapters.row(serving), adapters.row(rejected)], token="t-adapters")
    promoted = events_pb2.RolloutEvent(
        meta=codec.new_meta(tenant="acme", workflow="wf", producer="router"),
        adapter_id="ad-serving", from_state="canary", to_state="promoted",
    )  # fmt: skip
    await db.insert(rollouts.table, [rollouts.row(codec.encode_event(promoted))], token="t-rollouts")

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=200)  # every dataset is past its 180 days
    removed = await expire_artifacts(db, store, PRIVACY, now=later)
    assert removed == {"adapters": ["ad-rejected"], "datasets": ["ds-a-unused", "ds-c-unused"]}
    assert store.list_ids("datasets", "wf") == ["ds-b-in-use"]  # an adapter in use was trained on it
    assert store.list_ids("adapters", "wf") == ["ad-serving"]
