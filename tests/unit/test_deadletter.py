"""A dead letter names the tenant and workflow of the record it keeps, read from the record key."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cumulus.kafka import codec, topics
from cumulus.kafka.deadletter import UNKNOWN_WORKFLOW, dead_letter


def record(key: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(topic=topics.VERDICTS.name, partition=3, offset=7, key=key, value=b"\xff")


@pytest.mark.parametrize(
    ("key", "tenant", "workflow"),
    [
        (codec.encode_key("acme", "tickets"), "acme", "tickets"),
        (codec.encode_key("globex", "tickets"), "globex", "tickets"),
        (b"tickets", "", "tickets"),  # a key from before keys carried the tenant
        (None, "", UNKNOWN_WORKFLOW),
    ],
)
def test_the_dead_letter_is_attributed_from_the_record_key(
    key: bytes | None, tenant: str, workflow: str
) -> None:
    letter = dead_letter(record(key), consumer="router", producer="router", reason="not a Verdict")
    assert (letter.meta.tenant, letter.meta.workflow) == (tenant, workflow)
    assert (letter.key, letter.value, letter.source_partition, letter.source_offset) == (
        key or b"",
        b"\xff",
        3,
        7,
    )
    assert letter.source_topic == topics.VERDICTS.name and letter.reason == "not a Verdict"


def test_a_replayable_dead_letter_keeps_its_id_when_the_record_is_replayed() -> None:
    def letter(consumer: str, offset: int = 7, replayable: bool = True) -> str:
        source = record(codec.encode_key("acme", "tickets"))
        source.offset = offset
        return dead_letter(
            source, consumer=consumer, producer=consumer, reason="x", replayable=replayable
        ).meta.event_id

    assert letter("collector") == letter("collector")  # the same record after a crash: the same id
    assert len({letter("collector"), letter("judge"), letter("collector", offset=8)}) == 3
    assert letter("collector", replayable=False) != letter("collector", replayable=False)
