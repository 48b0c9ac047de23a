"""cumulus.kafka.deadletter.v1 events: a record a consumer could not use, kept with the reason.

Consumers never stop on a bad record: they publish it here (key, value and where it came from)
and move on, so an operator can inspect or replay it later.
"""

from __future__ import annotations

import hashlib
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cumulus.kafka import codec
from cumulus.v1 import events_pb2

UNKNOWN_WORKFLOW = "unattributed"
"""Workflow of a dead letter whose record carried no workflow in its key."""


def dead_letter(
    record: Any, *, consumer: str, producer: str, reason: str, replayable: bool = False
) -> events_pb2.DeadLetter:
    """The DeadLetter of an aiokafka ``ConsumerRecord`` (topic, partition, offset, key, value).

    Its tenant and workflow are read from the record's key (the value may be what failed to decode).
    ``replayable``: the letter's event id is derived from the record's coordinates and the
    consumer, so a batch replayed after a crash dead-letters it again under the same id and
    readers can dedupe; otherwise it is a fresh id.
    """
    failed_at = Timestamp()
    failed_at.GetCurrentTime()
    tenant, workflow = codec.decode_key(record.key)
    meta = codec.new_meta(tenant=tenant, workflow=workflow or UNKNOWN_WORKFLOW, producer=producer)
    if replayable:
        coordinates = f"{record.topic}:{record.partition}:{record.offset}:{consumer}"
        meta.event_id = hashlib.sha256(coordinates.encode()).hexdigest()[:32]
    return events_pb2.DeadLetter(
        meta=meta,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=record.key or b"",
        value=record.value or b"",
        consumer=consumer,
        reason=reason[:2000],
        failed_at=failed_at,
    )
