"""Encoding and decoding of Kafka records: protobuf values, tenant/workflow keys, event metadata.

Every record value is the serialized event of its topic (see cumulus.kafka.topics); the key is the
tenant and the workflow together (see encode_key), so one tenant's workflow stays ordered within
one partition and the compacted routes topic keeps one table per (tenant, workflow).
"""

from __future__ import annotations

import time
import uuid
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from cumulus.errors import EventDecodeError, InvalidArgument
from cumulus.kafka.topics import BY_NAME
from cumulus.v1 import common_pb2

E = TypeVar("E", bound=Message)

KEY_SEPARATOR = "/"
"""Between tenant and workflow in a record key; never in a workflow name (see encode_key)."""


def new_event_id() -> str:
    """A fresh event id: UUIDv4 hex, 32 characters."""
    return uuid.uuid4().hex


def timestamp_now() -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


def new_meta(
    *, tenant: str, workflow: str, producer: str, event_id: str | None = None
) -> common_pb2.EventMeta:
    """Metadata for an event happening now; ``published_at`` is stamped by the producer."""
    return common_pb2.EventMeta(
        event_id=event_id or new_event_id(),
        tenant=tenant,
        workflow=workflow,
        occurred_at=timestamp_now(),
        producer=producer,
    )


def encode_key(tenant: str, workflow: str) -> bytes:
    """The record key of an event of ``workflow`` of ``tenant``: ``b"tenant/workflow"`` in UTF-8.

    Workflows are tenant-scoped (two tenants may both name one "tickets"), so the key carries both.
    The key is unambiguous because a workflow name never contains "/": named workflows are
    identifiers (``[A-Za-z0-9][A-Za-z0-9._:-]*``, see services/gateway/validation.py) and derived
    ones are ``wf-<hex>``. A tenant may contain anything, so decode_key splits at the last "/".
    """
    if KEY_SEPARATOR in workflow:
        raise InvalidArgument(
            "workflow", f"{workflow!r} contains {KEY_SEPARATOR!r}", fix="name it with [A-Za-z0-9._:-]"
        )
    return f"{tenant}{KEY_SEPARATOR}{workflow}".encode()


def decode_key(key: bytes | None) -> tuple[str, str]:
    """(tenant, workflow) of a record key made by encode_key; a key without "/" is a bare workflow."""
    tenant, _, workflow = (key or b"").decode("utf-8", "replace").rpartition(KEY_SEPARATOR)
    return tenant, workflow


def encode_event(event: Message) -> bytes:
    """Serialize an event; deterministic so the same event always yields the same bytes."""
    return event.SerializeToString(deterministic=True)


def decode_event(topic: str, value: bytes | None) -> Message:
    """Decode a record value of ``topic`` into its event type.

    Raises EventDecodeError (the caller dead-letters the record) when the topic is unknown,
    the bytes are not that event, or the event lacks the metadata every event must carry.
    """
    spec = BY_NAME.get(topic)
    if spec is None:
        raise EventDecodeError(f"unknown topic {topic!r}", fix="add it to cumulus/kafka/topics.py")
    return decode_as(spec.event_type, value, topic=topic)


def decode_as(event_type: type[E], value: bytes | None, *, topic: str = "") -> E:
    """Decode ``value`` as ``event_type`` and check its metadata (see decode_event)."""
    where = f" on {topic}" if topic else ""
    if not value:
        raise EventDecodeError(f"empty record value{where}; expected {event_type.__name__}")
    event = event_type()
    try:
        event.ParseFromString(value)
    except DecodeError as exc:
        raise EventDecodeError(f"not a valid {event_type.__name__}{where}: {exc}") from exc
    meta = getattr(event, "meta", None)
    if meta is None or not meta.event_id:
        raise EventDecodeError(f"{event_type.__name__}{where} has no meta.event_id")
    if not meta.workflow:
        raise EventDecodeError(f"{event_type.__name__}{where} has no meta.workflow")
    return event
