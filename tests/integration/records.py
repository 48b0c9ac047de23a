"""Reading events back in tests that share the session broker.

Some tests put poison records on the shared topics on purpose (the dead-letter tests), so a test
reading a topic from the beginning skips what does not decode instead of failing on it.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from cumulus.errors import EventDecodeError
from cumulus.kafka import codec

E = TypeVar("E", bound=Message)


def decode_or_none(topic: str, value: bytes | None) -> Message | None:
    try:
        return codec.decode_event(topic, value)
    except EventDecodeError:
        return None


def decode_as_or_none(event_type: type[E], value: bytes | None) -> E | None:
    try:
        return codec.decode_as(event_type, value)
    except EventDecodeError:
        return None
