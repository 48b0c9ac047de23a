"""The collector killed or stopped mid-stream: nothing lost, nothing inserted twice, offsets committed.

Each test runs a collector of its own (real Kafka, the real ``python -m services.collector`` with
embedded chDB); counts as in test_collector.py: final == events == inserted == distinct events sent.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import pytest
from aiokafka.structs import OffsetAndMetadata

from cumulus.kafka import topics
from services.collector.batching import pending_note
from services.collector.clickhouse import connect, dedup_token, ensure_schema, insert_rows
from services.collector.clickhouse.schema import REQUESTS
from services.collector.rows import CAPTURES
from tests.integration.collector_process import (
    commit_for_group,
    inference_event,
    partitions,
    stamped,
)
from tests.integration.test_collector import _end_offsets, _read_from, new_collector, send, wf

pytestmark = pytest.mark.integration


def test_a_batch_inserted_before_a_crash_is_not_inserted_again(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The crash window between insert and commit: the batch is in ClickHouse, the offset is not
    committed, only the pending note is. The restarted collector re-forms the same batch, so the
    retried insert carries the same token and is dropped: N rows inserted, not N + 150."""
    name = wf("replay")
    collector = new_collector(kafka_bootstrap, tmp_path / "collector")
    tps = asyncio.run(partitions(kafka_bootstrap, [topics.INFERENCE.name]))
    consumer_ends = asyncio.run(_end_offsets(kafka_bootstrap, tps))
    send(kafka_bootstrap, [stamped(inference_event(name, i)) for i in range(300)])
    records = asyncio.run(_read_from(kafka_bootstrap, consumer_ends))
    (tp, batch), *_ = [(tp, rs) for tp, rs in records.items() if rs]
    first, last = batch[0].offset, batch[149].offset  # the crashed collector's batch: 150 records

    # What the crashed collector did: note, then insert (and no commit of last + 1).
    asyncio.run(
        commit_for_group(
            kafka_bootstrap, collector.group_id, {tp: OffsetAndMetadata(first, pending_note(last))}
        )
    )
    client = connect(f"chdb://{tmp_path / 'collector' / 'clickhouse'}")
    try:
        ensure_schema(client, "cumulus")
        rows = [CAPTURES[tp.topic].row(r.value) for r in batch[:150]]
        insert_rows(
            client, REQUESTS, rows, token=dedup_token(tp.topic, tp.partition, first, last), database="cumulus"
        )
    finally:
        client.close()

    collector.start()
    try:
        counts = collector.wait_for_rows(name, 300)
        assert (counts["inserted"], counts["events"], counts["final"]) == (300, 300, 300)
        assert "capture.replay" in collector.log_tail(20_000)
    finally:
        assert collector.stop() == 0


def test_kill_9_while_events_flow_loses_and_duplicates_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    name = wf("kill9")
    total, rate = 9000, 600.0
    collector = new_collector(kafka_bootstrap, tmp_path / "collector")
    events = [inference_event(name, i) for i in range(total)]
    producer = threading.Thread(target=send, args=(kafka_bootstrap, (stamped(e) for e in events), rate))
    producer.start()
    rng = random.Random(7)
    kills = 0
    try:
        while (producer.is_alive() and kills < 8) or kills < 5:
            # Half the kills hit a collector still starting up (replaying, joining), half a running one.
            collector.start(wait=rng.random() < 0.5)
            time.sleep(rng.uniform(0.5, 2.5))
            collector.kill()
            kills += 1
        producer.join()
        collector.start()
        counts = collector.wait_for_rows(name, total, timeout_s=90)
        assert (counts["inserted"], counts["events"], counts["final"]) == (total, total, total), counts
    finally:
        producer.join()
        collector.kill()
    assert kills >= 5


def test_sigterm_inserts_the_buffered_batch_and_commits(kafka_bootstrap: str, tmp_path: Path) -> None:
    name = wf("sigterm")
    collector = new_collector(
        kafka_bootstrap, tmp_path / "collector", CUMULUS_COLLECTOR__CAPTURE__BATCH_MAX_WAIT_S="30"
    )
    collector.start()
    try:
        send(kafka_bootstrap, [stamped(inference_event(name, i)) for i in range(100)])
        time.sleep(1.0)  # fetched, but far from the batch's 30 s wait or its 1,000 rows
        assert collector.capture_counts(name)["rows"] == 0
    finally:
        assert collector.stop() == 0
    client = connect(f"chdb://{tmp_path / 'collector' / 'clickhouse'}", "cumulus")
    try:
        rows = client.query(
            "SELECT count() FROM requests WHERE workflow = {w:String}", parameters={"w": name}
        )
        assert rows.result_rows == [(100,)]
    finally:
        client.close()
    tps = asyncio.run(partitions(kafka_bootstrap, [topics.INFERENCE.name]))
    assert asyncio.run(_committed(kafka_bootstrap, collector.group_id, tps)) == asyncio.run(
        _end_offsets(kafka_bootstrap, tps)
    )


async def _committed(bootstrap: str, group_id: str, tps: list) -> dict:  # type: ignore[type-arg]
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id, partitions=tps)
    finally:
        await admin.close()
    assert all(not o.metadata for o in offsets.values())  # no pending batch left behind
    return {tp: o.offset for tp, o in offsets.items()}
