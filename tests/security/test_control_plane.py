"""The control plane and the topics under attack: HTTP APIs without or with the wrong credentials,
commands and adapter events written to Kafka directly (forged, unsigned, stale, replayed), and
poison events on the capture topic. Each must leave the system unchanged, healthy and counting."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from cumulus.kafka import codec, topics
from cumulus.kafka.signing import HEADER, CommandSigner
from cumulus.operators import token_identity
from cumulus.v1 import events_pb2
from services.router.state import read_topic
from tests.integration.collector_process import inference_event, stamped
from tests.integration.stack_process import cli
from tests.security.conftest import SecureStack, dead_letters, produce, produce_events
from tests.security.test_front_door import ask


def test_every_api_needs_a_token_and_a_tenant_key_reads_only_its_tenant(secure_stack: SecureStack) -> None:
    stack = secure_stack
    for service, path in (
        ("collector", "/api/v1/workflows"),
        ("collector", "/api/v1/adapters"),
        ("router", "/api/v1/rollouts"),
        ("trainer", "/status"),
    ):
        assert stack.http(service, path)[0] == 401, (service, path)
        assert stack.http(service, path, token="cmo_forged")[0] == 401, (service, path)
        assert stack.http(service, path, token=stack.token)[0] == 200, (service, path)
    for service in ("collector", "router", "trainer", "judge", "gateway"):
        assert stack.http(service, "/healthz")[0] == 200  # health stays open for probes

    stub = stack.stub()
    for key, tenant in ((stack.key, "acme"), (stack.other_key, "globex")):
        stub.Generate(
            ask(workflow=f"mine-{tenant}"),
            metadata=stack.auth(key),
            timeout=30,
        )
    assert stack.wait_requests("mine-globex", 1, tenant="globex") == 1
    assert stack.wait_requests("mine-acme", 1) == 1
    # A tenant's key asking for every tenant sees its own tenant only; naming another is refused.
    for query in ("", "?tenant=", "?tenant=acme"):
        status, body = stack.http("collector", f"/api/v1/workflows{query}", token=stack.key)
        assert status == 200, body
        assert {w["tenant"] for w in body["workflows"]} == {"acme"}, query
    assert stack.http("collector", "/api/v1/workflows?tenant=globex", token=stack.key)[0] == 403
    assert stack.http("collector", "/api/v1/rollouts", token=stack.key)[0] == 403
    # ... and no control-plane action: nominating needs an operator token.
    status, _ = stack.http(
        "collector", "/api/v1/workflows/mine-acme/nominate", token=stack.key, method="POST", body=b"{}"
    )
    assert status in (401, 403)
    # Cross-site form posts (not JSON) are refused even with a valid token.
    status, body = stack.http(
        "collector",
        "/api/v1/workflows/mine-acme/nominate",
        token=stack.token,
        method="POST",
        body=b"tenant=acme",
        content_type="application/x-www-form-urlencoded",
    )
    assert status == 415, body


def _adapter_event(workflow: str, adapter_id: str, **fields: object) -> events_pb2.AdapterEvent:
    return events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant="acme", workflow=workflow, producer="trainer"),
        adapter_id=adapter_id,
        status=events_pb2.ADAPTER_STATUS_READY,
        gate_passed=True,
        version="1",
        **fields,  # type: ignore[arg-type]
    )


def _command(
    stack: SecureStack, workflow: str, action: int, sent_at_ns: int | None = None
) -> events_pb2.RolloutCommand:
    identity = token_identity(stack.config.state_dir, stack.token)
    assert identity is not None
    command = events_pb2.RolloutCommand(
        meta=codec.new_meta(tenant="acme", workflow=workflow, producer="cli"),
        action=action,  # type: ignore[arg-type]
        operator=identity[2],
        operator_token_id=identity[0],
    )
    command.meta.published_at.FromNanoseconds(sent_at_ns or time.time_ns())
    return command


def test_forged_unsigned_stale_and_replayed_commands_change_nothing(secure_stack: SecureStack) -> None:
    stack = secure_stack
    workflow = f"sec-{uuid.uuid4().hex[:8]}"
    # A bare-model candidate (no weights): the router starts its rollout in shadow.
    produce_events(stack.bootstrap, topics.ADAPTERS, [_adapter_event(workflow, "cand-1")], "trainer")
    assert stack.rollout(workflow)["state"] == "shadow"

    signer = CommandSigner.from_file(stack.config.command_key_file)
    impostor = CommandSigner(b"k" * 32)
    pause = events_pb2.ROLLOUT_ACTION_PAUSE
    unsigned, forged, stale = (
        _command(stack, workflow, pause),
        _command(stack, workflow, pause),
        _command(stack, workflow, pause, sent_at_ns=time.time_ns() - 3600 * 10**9),
    )
    key = codec.encode_key("acme", workflow)
    records = [
        (key, codec.encode_event(unsigned), []),
        (key, codec.encode_event(forged), [(HEADER, impostor.sign(key, codec.encode_event(forged)))]),
        (key, codec.encode_event(stale), [(HEADER, signer.sign(key, codec.encode_event(stale)))]),
    ]
    asyncio.run(produce(stack.bootstrap, topics.COMMANDS.name, records))  # type: ignore[arg-type]
    reasons = {
        event.meta.event_id: dead_letters(stack.bootstrap, event.meta.event_id.encode())[0].reason
        for event in (unsigned, forged, stale)
    }
    assert "unsigned command" in reasons[unsigned.meta.event_id]
    assert "forged command" in reasons[forged.meta.event_id]
    assert "stale command" in reasons[stale.meta.event_id]
    assert stack.rollout(workflow)["state"] == "shadow"

    # A genuine command, sent by the CLI, applies; the same record written again later does not.
    assert cli(stack.path, "rollout", "pause", workflow, "--tenant", "acme").returncode == 0
    assert stack.rollout(workflow, until=lambda r: r["state"] == "paused")["state"] == "paused"
    assert cli(stack.path, "rollout", "resume", workflow, "--tenant", "acme").returncode == 0
    stack.rollout(workflow, until=lambda r: r["state"] == "shadow")
    sent = [
        r
        for r in asyncio.run(read_topic(stack.bootstrap, topics.COMMANDS.name))
        if r.key == key
        and events_pb2.RolloutCommand.FromString(r.value).action == pause
        and dict(r.headers).get(HEADER)
        and not dead_letters_hold(stack, r.value)
    ]
    assert len(sent) == 1  # the CLI's pause
    replay = sent[0]
    asyncio.run(
        produce(stack.bootstrap, topics.COMMANDS.name, [(replay.key, replay.value, list(replay.headers))])
    )
    event_id = events_pb2.RolloutCommand.FromString(replay.value).meta.event_id
    assert "replayed command" in dead_letters(stack.bootstrap, event_id.encode())[0].reason
    time.sleep(1.0)
    assert stack.rollout(workflow)["state"] == "shadow"


def dead_letters_hold(stack: SecureStack, value: bytes) -> bool:
    event_id = events_pb2.RolloutCommand.FromString(value).meta.event_id.encode()
    return any(
        event_id in (r.value or b"") for r in asyncio.run(read_topic(stack.bootstrap, topics.DEADLETTER.name))
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"artifact_uri": "file:///etc", "lora_task_id": 9, "manifest_sha256": "ab" * 32},
        {"artifact_uri": "file:///tmp/../etc/passwd", "lora_task_id": 9, "manifest_sha256": "ab" * 32},
        {"lora_task_id": 9},  # weights without a pin
    ],
    ids=["outside", "dotdot", "unpinned"],
)
def test_an_adapter_event_naming_an_artifact_outside_the_store_is_refused(
    secure_stack: SecureStack, fields: dict[str, object]
) -> None:
    workflow = f"sec-{uuid.uuid4().hex[:8]}"
    event = _adapter_event(workflow, "evil", **fields)
    produce_events(secure_stack.bootstrap, topics.ADAPTERS, [event], "trainer")  # a compromised trainer
    [letter] = dead_letters(secure_stack.bootstrap, event.meta.event_id.encode())
    assert "outside the artifact store" in letter.reason or "no manifest_sha256" in letter.reason
    assert not [r for r in secure_stack.rollouts() if r["workflow"] == workflow]


def test_poison_events_are_dead_lettered_and_the_count_stays_exact(secure_stack: SecureStack) -> None:
    stack = secure_stack
    workflow = f"poison-{uuid.uuid4().hex[:8]}"
    collector_pid = stack.pid("collector")
    key = codec.encode_key("acme", workflow)
    overflowing, before_1900, no_meta = inference_event(workflow, 900), inference_event(workflow, 901), None
    overflowing.meta.occurred_at.seconds = 2**40  # past year 9999 (what kcat wrote in the issue)
    before_1900.meta.occurred_at.seconds = -5_000_000_000  # 1811
    no_meta = events_pb2.InferenceEvent(request_id=f"{workflow}-no-meta")
    good = [stamped(inference_event(workflow, i)) for i in range(20)]
    poison = [
        (key, f"{workflow}\x08\x96garbage".encode()),
        stamped(overflowing),
        stamped(before_1900),
        (key, codec.encode_event(no_meta)),
    ]
    records = [(k, v, []) for k, v in good[:10] + poison + good[10:]]
    asyncio.run(produce(stack.bootstrap, topics.INFERENCE.name, records, "gateway"))  # type: ignore[arg-type]
    assert stack.wait_requests(workflow, 20) == 20
    for needle in (
        f"{workflow}\x08".encode(),
        overflowing.meta.event_id.encode(),
        before_1900.meta.event_id.encode(),
    ):
        assert dead_letters(stack.bootstrap, needle)
    assert dead_letters(stack.bootstrap, f"{workflow}-no-meta".encode())
    assert stack.pid("collector") == collector_pid  # never crashed
    assert stack.http("collector", "/readyz")[0] == 200
