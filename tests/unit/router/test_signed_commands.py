"""Operator commands count only when signed with the command key; others are dead-lettered, unapplied."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cumulus.kafka import codec, topics
from cumulus.kafka.signing import HEADER, CommandSigner
from cumulus.v1 import events_pb2
from services.router.handler import RouterHandler
from services.router.rollout import PAUSED, SHADOW
from tests.unit.router.test_rollout import KEY, command, started


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


def command_record(signer: CommandSigner | None, headers: list[tuple[str, bytes]] | None = None) -> Record:
    pause = command(events_pb2.ROLLOUT_ACTION_PAUSE)
    key, value = codec.encode_key(pause.meta.tenant, pause.meta.workflow), codec.encode_event(pause)
    if signer is not None:
        headers = [(HEADER, signer.sign(key, value))]
    return Record(topics.COMMANDS.name, key, value, headers or [])


def test_only_commands_signed_with_the_key_change_a_rollout(tmp_path: Path) -> None:
    signer = CommandSigner.from_file(tmp_path / "command-key")
    assert (tmp_path / "command-key").stat().st_mode & 0o777 == 0o600
    impostor = CommandSigner.from_file(tmp_path / "another-key")
    router, publisher = started(), Publisher()
    handler = RouterHandler(publisher, router, signer)  # type: ignore[arg-type]

    genuine = command_record(signer)
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
