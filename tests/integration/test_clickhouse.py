"""The schema and the insert path on a real embedded chDB.

chDB runs one engine per process, on one data path: while any client is open, opening a
different path fails (``test_one_path_per_process`` pins that down). So this module uses a
single data directory, gives each test its own database, and closes every client at the end of
the test, which shuts the engine down and leaves other modules free to use their own path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from cumulus.config.pipeline import ExportConfig
from cumulus.errors import NotReady
from services.collector.clickhouse import TABLES, VIEWS, connect, dedup_token, ensure_schema, insert_rows
from services.collector.clickhouse.schema import DEDUP_WINDOW, FEEDBACK, REQUESTS, ROLLOUT_EVENTS, VERDICTS
from services.collector.export import read_sources
from services.collector.store import ClickHouseStore

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 3, 1, 12, 0, 30, 123000, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def client(chdb_dir: Path) -> Iterator[Client]:
    client = connect(f"chdb://{chdb_dir}")
    yield client
    client.close()


@pytest.fixture
def database(client: Client) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    ensure_schema(client, name)
    return name


def request_row(i: int, *, workflow: str = "wf-a", status: str = "ok", **overrides: Any) -> list[Any]:
    values: dict[str, Any] = {
        "event_id": f"ev-{i}",
        "tenant": "acme",
        "workflow": workflow,
        "workflow_source": "client",
        "fingerprint": "fp-1",
        "request_id": f"req-{i}",
        "session_key": "",
        "occurred_at": NOW,
        "published_at": NOW,
        "model": "live",
        "adapter_id": "",
        "adapter_version": "",
        "route_mode": "live",
        "prompt": f"<|im_start|>user\nquestion {i}<|im_end|>",
        "messages": '[{"role": "user", "content": "q"}]',
        "tools": "[]",
        "params": '{"max_tokens": 64}',
        "response": f"answer {i} é✓",
        "prompt_tokens": 10 + i,
        "completion_tokens": 5,
        "latency_ms": float(10 * (i + 1)),
        "ttft_ms": 3.5,
        "status": status,
        "error": "" if status == "ok" else "boom",
        "candidate_error": "",
        "metadata": {"client": "sdk-1.2"},
        "redacted": {"EMAIL": 1},
        **overrides,
    }
    assert list(values) == list(REQUESTS.insert_columns)
    return list(values.values())


def count_final(client: Client, database: str, table: str) -> int:
    return int(client.query(f"SELECT count() FROM `{database}`.`{table}` FINAL").result_rows[0][0])


def test_ensure_schema_is_idempotent_and_creates_every_object(client: Client, database: str) -> None:
    ensure_schema(client, database)  # second run on an existing schema
    names = {row[0] for row in client.query(f"SHOW TABLES FROM `{database}`").result_rows}
    assert names == {t.name for t in TABLES} | {v.name for v in VIEWS}
    for table in TABLES:
        columns = client.query(
            "SELECT name FROM system.columns"
            " WHERE database = {db:String} AND table = {t:String} ORDER BY position",
            parameters={"db": database, "t": table.name},
        ).result_rows
        assert tuple(c[0] for c in columns) == table.column_names
        engine = client.query(
            "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": database, "t": table.name},
        ).result_rows[0][0]
        assert f"non_replicated_deduplication_window = {DEDUP_WINDOW}" in engine


def test_round_trip(client: Client, database: str) -> None:
    insert_rows(client, REQUESTS, [request_row(0)], token="t:0:0-0", database=database)
    result = client.query(f"SELECT * FROM `{database}`.requests FINAL")
    row = dict(zip(result.column_names, result.result_rows[0], strict=True))
    assert row["event_id"] == "ev-0"
    assert row["response"] == "answer 0 é✓"
    assert row["metadata"] == {"client": "sdk-1.2"}
    assert row["latency_ms"] == 10.0
    # UTC columns come back as naive datetimes holding UTC wall time.
    assert row["occurred_at"] == NOW.replace(tzinfo=None)
    assert row["ingested_at"] is not None


def test_retried_batch_with_same_token_is_inserted_once(client: Client, database: str) -> None:
    batch = [request_row(i) for i in range(50)]
    token = dedup_token("cumulus.inference.v1", 0, 0, 49)
    for _ in range(3):
        insert_rows(client, REQUESTS, batch, token=token, database=database)
    assert count_final(client, database, "requests") == 50
    # Also without FINAL: the retries never reached the table, they weren't merged away.
    assert client.query(f"SELECT count() FROM `{database}`.requests").result_rows[0][0] == 50


def test_same_event_in_two_batches_collapses_under_final(client: Client, database: str) -> None:
    insert_rows(client, REQUESTS, [request_row(1), request_row(2)], token="t:0:1-2", database=database)
    insert_rows(client, REQUESTS, [request_row(2), request_row(3)], token="t:0:2-3", database=database)
    assert count_final(client, database, "requests") == 3


def test_materialized_view_aggregates_and_skips_retried_batches(client: Client, database: str) -> None:
    batch = [request_row(i) for i in range(4)] + [request_row(9, status="UNAVAILABLE", workflow="wf-b")]
    for _ in range(2):
        insert_rows(client, REQUESTS, batch, token="t:1:0-4", database=database)
    stats = client.query(
        f"""SELECT workflow, minute, sum(requests), sum(errors), sum(prompt_tokens),
                   sum(completion_tokens), quantilesMerge(0.5, 0.95, 0.99)(latency_ms), max(last_seen)
            FROM `{database}`.workflow_stats_minute GROUP BY workflow, minute ORDER BY workflow"""
    ).result_rows
    assert [s[:6] for s in stats] == [
        ("wf-a", NOW.replace(second=0, microsecond=0, tzinfo=None), 4, 0, 10 + 11 + 12 + 13, 20),
        ("wf-b", NOW.replace(second=0, microsecond=0, tzinfo=None), 1, 1, 19, 5),
    ]
    p50, _, p99 = stats[0][6]
    assert 10.0 <= p50 <= 40.0 and p99 <= 40.0


def test_map_of_floats_and_other_tables_insert(client: Client, database: str) -> None:
    row = [
        "ev-r1",
        "acme",
        "wf-a",
        "ro-1",
        "ad-1",
        NOW,
        "shadow",
        "canary",
        1,
        0.01,
        "non-inferior",
        "router",
        {"n": 412.0},
    ]
    insert_rows(client, ROLLOUT_EVENTS, [row], token="t:r:0-0", database=database)
    got = client.query(f"SELECT to_state, weight, evidence FROM `{database}`.rollout_events").result_rows
    assert got == [("canary", 0.01, {"n": 412.0})]


def test_one_path_per_process(client: Client, tmp_path: Path) -> None:
    # `client` holds the module's path open, so this process cannot open another one.
    with pytest.raises(NotReady) as info:
        connect(f"chdb://{tmp_path / 'other'}")
    assert "one path per process" in info.value.message


def test_second_process_on_the_same_path_is_told_who_owns_it(tmp_path: Path) -> None:
    data = tmp_path / "owned"
    holder_code = (
        "import sys; from services.collector.clickhouse import connect; "
        f"c = connect('chdb://{data}'); c.command('SELECT 1'); print('ready', flush=True); sys.stdin.read()"
    )
    # Leaving the block closes the holder's stdin, which ends it, and waits for it.
    with subprocess.Popen(
        [sys.executable, "-c", holder_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(NotReady) as info:
            connect(f"chdb://{data}")
        assert f"in use by process {holder.pid}" in info.value.message
        assert "cumulus down" in (info.value.fix or "")
    # Once the owner exits, the path is free for this process.
    other = connect(f"chdb://{data}")
    try:
        assert other.query("SELECT 1").result_rows == [(1,)]
    finally:
        other.close()


def test_a_table_from_an_older_release_gets_the_new_columns_and_keeps_its_rows(
    client: Client, database: str
) -> None:
    table = f"`{database}`.verdicts"
    client.command(f"DROP TABLE {table}")
    old = [
        c for c in VERDICTS.columns if c.name not in {"reference", "live_score", "live_passed", "request_id"}
    ]
    columns = ", ".join(f"`{c.name}` {c.type}" + (f" DEFAULT {c.default}" if c.default else "") for c in old)
    client.command(f"CREATE TABLE {table} ({columns}) ENGINE = ReplacingMergeTree ORDER BY verdict_id")
    client.command(f"INSERT INTO {table} (verdict_id, passed) VALUES ('v-old', true)")
    ensure_schema(client, database)
    names = [
        r[0]
        for r in client.query(
            f"SELECT name FROM system.columns WHERE database = '{database}' AND table = 'verdicts'"
            " ORDER BY position"
        ).result_rows
    ]
    assert names == list(VERDICTS.column_names)
    assert client.query(f"SELECT verdict_id, passed, reference, live_passed FROM {table}").result_rows == [
        ("v-old", True, "", False)
    ]


def feedback_row(event_id: str, request_id: str, seconds: int, **values: Any) -> list[Any]:
    row = {"event_id": event_id, "tenant": "acme", "workflow": "wf-a", "request_id": request_id}
    row |= {"occurred_at": NOW + dt.timedelta(seconds=seconds), "score": None, "label": "", "correction": ""}
    row |= {"comment": "", "redacted": {}, **values}
    assert list(row) == list(FEEDBACK.insert_columns)
    return list(row.values())


def test_feedback_sent_twice_counts_once_and_the_latest_wins(
    chdb_dir: Path, client: Client, database: str
) -> None:
    insert_rows(client, REQUESTS, [request_row(1), request_row(2)], token="t:r", database=database)
    first = feedback_row("fb-1", "req-1", 1, label="billing")
    latest = feedback_row("fb-2", "req-1", 5, correction="refunds")
    # The later feedback is stored first, and delivered twice (a producer retry).
    for token, rows in (("t:a", [latest]), ("t:b", [first, latest])):
        insert_rows(client, FEEDBACK, rows, token=token, database=database)

    async def read() -> dict[str, Any]:
        store = ClickHouseStore(f"chdb://{chdb_dir}", database)
        await store.open()
        try:
            _, notes = await read_sources(store, "acme", "wf-a", ExportConfig())
        finally:
            await store.close()
        return notes

    notes = asyncio.run(read())
    assert list(notes) == ["req-1"]  # one note for the request, none for the one without feedback
    assert notes["req-1"].correction == "refunds" and notes["req-1"].label == ""
