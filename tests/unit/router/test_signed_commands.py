"""Operator commands count only when signed with the command key; others are dead-lettered, unapplied."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cumulus.artifacts import ArtifactStore
from cumulus.kafka import codec, topics
from cumulus.kafka.signing import HEADER, CommandSigner
from cumulus.operators import issue_token, token_identity, token_store
from cumulus.rollout_states import PAUSED, SHADOW
from cumulus.v1 import events_pb2
from services.router.command_guard import CommandGuard
from services.router.core import Router
from services.router.handler import RouterHandler
from tests.unit.router.test_rollout import CONFIG, KEY, adapter_event, command, started


@dataclass
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int = 0
    offset: int = 0


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any]] = []

    def publish(self, topic: Any, event: Any) -> None:
        self.sent.append((topic, event))


def operator_command(
    state_dir: Path, scope: str = "operator", name: str = "alice"
) -> events_pb2.RolloutCommand:
    """A pause sent now under a fresh operator token of ``scope``, as the CLI sends it."""
    token = issue_token(state_dir, name, scope)
    identity = token_identity(state_dir, token)
    assert identity is not None
    pause = command(events_pb2.ROLLOUT_ACTION_PAUSE)
    pause.operator, pause.operator_token_id = name, identity[0]
    pause.meta.published_at.CopyFrom(codec.timestamp_now())
    return pause


def command_record(
    signer: CommandSigner | None,
    headers: list[tuple[str, bytes]] | None = None,
    pause: events_pb2.RolloutCommand | None = None,
) -> Record:
    pause = pause or command(events_pb2.ROLLOUT_ACTION_PAUSE)
    key, value = codec.encode_key(pause.meta.tenant, pause.meta.workflow), codec.encode_event(pause)
    if signer is not None:
        headers = [(HEADER, signer.sign(key, value))]
    return Record(topics.COMMANDS.name, key, value, headers or [])


def test_only_commands_signed_with_the_key_change_a_rollout(tmp_path: Path) -> None:
    signer = CommandSigner.from_file(tmp_path / "command-key")
    assert (tmp_path / "command-key").stat().st_mode & 0o777 == 0o600
    impostor = CommandSigner.from_file(tmp_path / "another-key")
    router, publisher = started(), Publisher()
    handler = RouterHandler(publisher, router, signer, CommandGuard(tmp_path, 300), ArtifactStore(tmp_path))  # type: ignore[arg-type]

    genuine = command_record(signer, pause=operator_command(tmp_path))
    swapped = Record(genuine.topic, codec.encode_key("globex", "tickets"), genuine.value, genuine.headers)
    refused = [
        command_record(None),
        command_record(impostor),
        command_record(None, headers=[(HEADER, b"00" * 32)]),
        swapped,  # a genuine signature on another tenant's key
    ]
    handler.decide(refused)
    assert router.rollouts[KEY].state == SHADOW
    letters = [event for topic, event in publisher.sent if topic == topics.DEADLETTER]
    assert len(letters) == 4
    assert "unsigned command" in letters[0].reason
    assert all("forged command" in letter.reason for letter in letters[1:])

    handler.decide([genuine])
    assert router.rollouts[KEY].state == PAUSED


def test_the_cli_and_the_router_share_one_key_file(tmp_path: Path) -> None:
    first = CommandSigner.from_file(tmp_path / "k")
    second = CommandSigner.from_file(tmp_path / "k")
    assert first.sign(b"k", b"v") == second.sign(b"k", b"v") != first.sign(b"k", b"w")


def test_a_signed_command_must_be_fresh_new_and_from_a_valid_operator_token(tmp_path: Path) -> None:
    signer = CommandSigner.from_file(tmp_path / "command-key")
    now = [1_000_000.0]
    guard = CommandGuard(tmp_path, max_age_s=300, clock=lambda: now[0])

    def refusal(pause: events_pb2.RolloutCommand) -> str | None:
        return guard.refuse(pause)

    fresh = operator_command(tmp_path)
    now[0] = fresh.meta.published_at.ToMicroseconds() / 1e6 + 1
    assert refusal(fresh) is None
    assert "replayed command" in (refusal(fresh) or "")  # the same record written again

    stale = operator_command(tmp_path)
    now[0] += 301
    assert "stale command: sent 30" in (refusal(stale) or "")
    future = operator_command(tmp_path)
    now[0] = future.meta.published_at.ToMicroseconds() / 1e6 - 120
    assert "in the future" in (refusal(future) or "")
    now[0] += 120

    reader = operator_command(tmp_path, scope="read", name="bob")
    assert "holds a 'read' token" in (refusal(reader) or "")
    impostor = operator_command(tmp_path, name="carol")
    impostor.operator = "alice"
    assert "operator mismatch" in (refusal(impostor) or "")
    nameless = command(events_pb2.ROLLOUT_ACTION_PAUSE)
    nameless.meta.published_at.CopyFrom(fresh.meta.published_at)
    assert "unknown operator" in (refusal(nameless) or "")

    revoked = operator_command(tmp_path, name="dave")
    assert token_store(tmp_path).revoke_id(revoked.operator_token_id)
    assert "unknown operator" in (refusal(revoked) or "")

    # Through the handler: refused commands are dead-lettered with the reason and change nothing.
    router, publisher = started(), Publisher()
    handler = RouterHandler(publisher, router, signer, CommandGuard(tmp_path, 300), ArtifactStore(tmp_path))  # type: ignore[arg-type]
    handler.decide([command_record(signer, pause=revoked)])
    assert router.rollouts[KEY].state == SHADOW
    genuine = operator_command(tmp_path, name="erin")
    handler.decide([command_record(signer, pause=genuine), command_record(signer, pause=genuine)])
    assert router.rollouts[KEY].state == PAUSED
    reasons = [event.reason for topic, event in publisher.sent if topic == topics.DEADLETTER]
    assert len(reasons) == 2 and "unknown operator" in reasons[0] and "replayed" in reasons[1]


def test_an_adapter_outside_the_store_or_unpinned_never_becomes_a_route(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    router, publisher = Router(CONFIG), Publisher()
    handler = RouterHandler(
        publisher, router, CommandSigner.from_file(tmp_path / "k"), CommandGuard(tmp_path, 300), store
    )  # type: ignore[arg-type]
    outside, unpinned, good = adapter_event("ad-1"), adapter_event("ad-2"), adapter_event("ad-3")
    outside.artifact_uri = "file:///etc"
    unpinned.manifest_sha256, unpinned.artifact_uri = "", ""
    good.artifact_uri = store.uri("adapters", good.meta.workflow, "ad-3")
    records = [
        Record(topics.ADAPTERS.name, b"k", codec.encode_event(event), offset=i)
        for i, event in enumerate((outside, unpinned, good))
    ]
    handler.decide(records)
    reasons = [event.reason for topic, event in publisher.sent if topic == topics.DEADLETTER]
    assert len(reasons) == 2
    assert "outside the artifact store" in reasons[0] and "no manifest_sha256" in reasons[1]
    assert [key[-1] for key in router.rollouts] == [good.meta.workflow] and len(router.rollouts) == 1
