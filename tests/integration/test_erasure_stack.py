"""Privacy on the whole real stack (`cumulus up`: Kafka, Triton, every service as a process).

Two tenants send requests holding seeded personal data through the gateway: ``shop`` redacts
before storage (the default, ``store``), ``clinic`` before capture (``capture``). No raw value
reaches ClickHouse or a dataset, nor Kafka for ``clinic``. ``shop``'s workflow is trained
(tiny-llama, a few steps) and its adapter promoted; then one of its two users is erased with
`cumulus erase`: the receipt counts their rows, the rewritten dataset and the tainted adapter;
the retrain (policy ``retrain``) trains v2 from scratch on a dataset without them and rolls it
out over v1; the other user's rows stay. After `cumulus down` the stack's own chDB is queried:
it agrees with the receipt.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from cumulus.artifacts import ArtifactStore, read_jsonl
from cumulus.config import load_config
from cumulus.kafka import codec, topics
from cumulus.v1 import events_pb2, gateway_pb2, gateway_pb2_grpc
from services.collector.clickhouse import schema
from services.collector.clickhouse.client import connect
from tests.integration.stack_process import ask, cli, stack_config_file, wait_rollout

pytestmark = pytest.mark.integration
WORKFLOW = "tickets"
USERS = {"ana": "ana.lima@example.org", "bo": "bo.chen@example.net"}
SSN, CARD = "123-45-6789", "4111 1111 1111 1111"
RAW = [*USERS.values(), SSN, CARD, "session-ana", "session-bo"]
PER_USER = 16
RECIPE = {
    "lora": {"rank": 4, "alpha": 8},
    "data": {"max_seq_len": 128},
    "optim": {"lr": 1.0e-3, "warmup_steps": 1},
    "train": {"batch_size": 4, "epochs": 1, "max_steps": 4, "eval_every": 0, "early_stopping_patience": 0},
    "precision": "fp32",
    "device": "cpu",
}  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Path]:
    for path in stack_config_file(tmp_path):
        config = yaml.safe_load(path.read_text())
        (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
        config["privacy"] = {"tenants": {"clinic": {"redact": "capture"}}}
        config["collector"].update(detection={"enabled": False}, export={"min_examples": 8})
        config["trainer"].update(
            recipe=str(tmp_path / "recipe.yaml"),
            gate_threshold=0.0,  # tiny-llama answers nonsense: the gate is not what is tested here
            gate_max_examples=4,
            gate_max_new_tokens=4,
            # One model plays live and student: say what each costs, as a price list would.
            students=[{"model": "tiny-llama", "cost_per_token": 1.0}],
            live_cost_per_token=10.0,
        )
        path.write_text(yaml.safe_dump(config))
        yield path


def test_erasing_a_user_reaches_every_store_and_retrains_the_adapter(stack: Path) -> None:
    config = yaml.safe_load(stack.read_text())
    up = cli(stack, "up", timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr
    keys = {tenant: _issue_key(stack, tenant) for tenant in ("shop", "clinic")}
    sent = _send(config, keys, "shop", USERS) | _send(config, keys, "clinic", {"cy": "cy@example.com"})
    _wait_requests(stack, "shop", 2 * PER_USER)
    _wait_requests(stack, "clinic", PER_USER)

    nominated = cli(stack, "nominate", WORKFLOW, "--tenant", "shop", "--json")
    assert nominated.returncode == 0, nominated.stdout + nominated.stderr
    v1 = wait_rollout(stack, WORKFLOW, ("shadow",), timeout_s=300, tenant="shop")["adapter_id"]
    promoted = cli(stack, "rollout", "promote", WORKFLOW, "--tenant", "shop")
    assert promoted.returncode == 0, promoted.stderr
    wait_rollout(stack, WORKFLOW, ("promoted",), tenant="shop")

    erased = cli(stack, "erase", "--tenant", "shop", "--user", "ana", "--json", timeout=300)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    receipt = json.loads(erased.stdout)
    assert receipt["requests_found"] == PER_USER
    assert receipt["clickhouse"]["requests"] == {"removed": PER_USER, "remaining": 0}
    assert receipt["clickhouse"]["feedback"] == {"removed": PER_USER, "remaining": 0}
    [dataset] = receipt["datasets"]
    [tainted] = receipt["adapters"]
    assert tainted["adapter_id"] == v1 and tainted["action"].startswith("retrain: nominated again as cand-")

    # v2: trained from scratch on a fresh export without ana, rolled out over v1.
    v2 = _newest_rollout_other_than(stack, v1)
    assert v2["state"] in ("shadow", "canary") and v2["tenant"] == "shop"
    store = ArtifactStore(load_config(stack, env={}).artifacts_dir)
    fields = store.verify("adapters", WORKFLOW, v2["adapter_id"]).fields
    assert fields["parent_adapter_id"] == v1 and fields["warm_started_from"] == ""
    assert fields["dataset_id"] != dataset["dataset_id"]
    ana = {sent[("shop", "ana", i)] for i in range(PER_USER)}
    for dataset_id in (fields["dataset_id"], dataset["dataset_id"]):
        folder = store.path("datasets", WORKFLOW, dataset_id)
        lines = [line for split in ("train", "holdout") for line in read_jsonl(folder / f"{split}.jsonl")]
        assert lines and not {line["request_id"] for line in lines} & ana
        assert not [v for v in RAW if v in json.dumps(lines)]

    again = json.loads(cli(stack, "erase", "--tenant", "shop", "--user", "ana", "--json").stdout)
    assert again["nothing_found"] and again["requests_found"] == 0

    _no_raw_value_in_kafka_for_the_capture_tenant(config)
    down = cli(stack, "down", timeout=180)
    assert down.returncode == 0, down.stderr
    _clickhouse_agrees_with_the_receipt(stack, ana, {sent[("shop", "bo", i)] for i in range(PER_USER)})


def _issue_key(stack: Path, tenant: str) -> str:
    issued = cli(stack, "keys", "issue", "--tenant", tenant)
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.split(f"API key for tenant {tenant}: ")[1].split()[0]


def _send(
    config: dict[str, Any], keys: dict[str, str], tenant: str, users: dict[str, str]
) -> dict[tuple[str, str, int], str]:
    """PER_USER requests of each user of ``tenant``, holding their email, an SSN and a card, each
    with the user's correction (holding the email again); their request ids by (tenant, user, i)."""
    sent = {}
    with grpc.insecure_channel(f"127.0.0.1:{config['gateway']['grpc_port']}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        for user, email in users.items():
            for i in range(PER_USER):
                # Each user's own words: the export keeps one example per (normalised) prompt.
                text = f"{user.title()} here, ticket {i}: I am {email}, SSN {SSN}; card {CARD} charged twice."
                reply = ask(
                    stub, keys[tenant], WORKFLOW, text, session_key=f"session-{user}", metadata={"user": user}
                )
                sent[(tenant, user, i)] = reply.request_id
                # The user's correction is the gold answer (tiny-llama's own answers are empty).
                correction = f'{{"team": "billing", "contact": "{email}", "ticket": {i}}}'
                feedback = gateway_pb2.FeedbackRequest(request_id=reply.request_id, correction=correction)
                stub.Feedback(feedback, metadata=[("authorization", f"Bearer {keys[tenant]}")], timeout=30)
    return sent


def _wait_requests(stack: Path, tenant: str, want: int, timeout_s: float = 60) -> None:
    deadline, have = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        listed = json.loads(cli(stack, "workflows", "--json", "--tenant", tenant).stdout or "[]")
        have = sum(w["requests"] for w in listed if w["workflow"] == WORKFLOW)
        if have >= want:
            assert have == want
            return
        time.sleep(1)
    raise AssertionError(f"{tenant}: {have} of {want} requests captured")


def _newest_rollout_other_than(stack: Path, adapter_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline, rows = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        listed = json.loads(cli(stack, "rollout", "list", "--json").stdout or '{"rollouts": []}')
        rows = [r for r in listed["rollouts"] if r["workflow"] == WORKFLOW and r["tenant"] == "shop"]
        if rows and rows[0]["adapter_id"] != adapter_id and rows[0]["state"] != "pending":
            return dict(rows[0])
        time.sleep(1)
    raise AssertionError(f"no new version rolled out over {adapter_id}: {rows}")


def _no_raw_value_in_kafka_for_the_capture_tenant(config: dict[str, Any]) -> None:
    """``capture``: the gateway published clinic's events redacted; shop's went raw (the collector
    redacts them), which shows the search would find a raw value."""
    values: dict[str, list[bytes]] = {"shop": [], "clinic": []}

    async def read() -> None:
        consumer = AIOKafkaConsumer(
            topics.INFERENCE.name,
            bootstrap_servers=config["kafka"]["bootstrap_servers"],
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=f"privacy-it-{uuid.uuid4().hex[:6]}",
        )
        await consumer.start()
        try:
            while batch := await consumer.getmany(timeout_ms=3000):
                for record in (r for records in batch.values() for r in records):
                    event = codec.decode_as(events_pb2.InferenceEvent, record.value, topic=record.topic)
                    if event.meta.tenant in values and event.meta.workflow == WORKFLOW:
                        values[event.meta.tenant].append(record.value)
        finally:
            await consumer.stop()

    asyncio.run(read())
    assert len(values["clinic"]) == PER_USER and len(values["shop"]) >= 2 * PER_USER
    assert not [v for v in values["clinic"] if any(raw.encode() in v for raw in [*RAW, "cy@example.com"])]
    assert all(b"<EMAIL_" in v and b"<SSN_" in v for v in values["clinic"])
    assert all(SSN.encode() in v for v in values["shop"])


def _clickhouse_agrees_with_the_receipt(stack: Path, ana: set[str], bo: set[str]) -> None:
    loaded = load_config(stack, env={})
    client = connect(loaded.clickhouse_dsn, loaded.clickhouse.database)
    try:
        for table in schema.TABLES:
            if table is schema.WORKFLOW_STATS_MINUTE:
                continue  # counts and latency sketches only (no text), in types the client cannot read
            rows = client.query(f"SELECT * FROM `{table.name}`").result_rows
            dumped = json.dumps(rows, default=str)
            assert not [v for v in [*RAW, "cy@example.com"] if v in dumped], table.name
        kept = client.query(
            "SELECT DISTINCT request_id FROM requests FINAL WHERE tenant = 'shop'"
        ).result_rows
        assert {r[0] for r in kept} == bo  # ana's are gone, bo's all stay
        for table in ("requests", "verdicts", "feedback", "audit_answers"):
            left = client.query(
                f"SELECT count() FROM `{table}` FINAL WHERE request_id IN {{ids:Array(String)}}",
                parameters={"ids": sorted(ana)},
            ).result_rows
            assert left == [(0,)], table
    finally:
        client.close()
