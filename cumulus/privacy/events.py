"""Redact a captured event in place: every free text it carries, before it is published
(``privacy.redact: capture``, the gateway) or stored (``store``, the collector).

What is redacted: chat messages, tool descriptions and schemas, the rendered prompt, every
answer, error messages, metadata values, a feedback's correction and comment, a verdict's
details. The session key and the ``user`` metadata are replaced by keyed pseudonyms (the same for
every event of the session or user, so they still group, and `cumulus erase --session/--user`
finds them by computing it). Names of tools, workflows, models and adapters are not personal
data and stay as they are. The counts by kind go into the event's ``redacted`` map; the values
go nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Callable, Iterable

from google.protobuf.message import Message

from cumulus.privacy.redactor import Redactor
from cumulus.v1 import common_pb2, events_pb2

PSEUDONYMS = {"session": "sess-", "user": "user-"}
USER_METADATA = "user"
"""The metadata key naming the application's end user (what `cumulus erase --user` looks for)."""
_Text = Callable[[str], str]


def pseudonym(key: bytes, value: str, of: str = "session") -> str:
    """A session key or user id as stored: a keyed digest, stable across requests (unlike
    placeholders); one already made is kept."""
    prefix = PSEUDONYMS[of]
    if not value or value.startswith(prefix):
        return value
    return prefix + hmac.new(key, f"{of}\0{value}".encode(), hashlib.sha256).hexdigest()[:24]


def redact_event(event: Message, redactor: Redactor, key: bytes) -> Counter[str]:
    """Redact ``event`` (an InferenceEvent, ShadowPair, FeedbackEvent or Verdict; others are left
    alone) in place; the counts by kind, also added to its ``redacted`` map (a Verdict has none)."""
    counts: Counter[str] = Counter()
    if isinstance(event, events_pb2.Verdict):
        event.details_json = redactor.redact(event.details_json, event.request_id, counts)
        return counts
    if not isinstance(event, (events_pb2.InferenceEvent, events_pb2.ShadowPair, events_pb2.FeedbackEvent)):
        return counts
    scope = event.request_id

    def text(value: str) -> str:
        return redactor.redact(value, scope, counts)

    if isinstance(event, events_pb2.InferenceEvent):
        _messages(event.messages, text)
        _tools(event.tools, text)
        event.prompt_text = text(event.prompt_text)
        event.response_text = text(event.response_text)
        event.error_message = text(event.error_message)
        event.candidate_error = text(event.candidate_error)
        for name, value in list(event.metadata.items()):
            event.metadata[name] = pseudonym(key, value, "user") if name == USER_METADATA else text(value)
        event.session_key = pseudonym(key, event.session_key)
    elif isinstance(event, events_pb2.ShadowPair):
        _messages(event.messages, text)
        _tools(event.tools, text)
        for output in (event.live, event.candidate):
            output.text = text(output.text)
            output.error_message = text(output.error_message)
    else:
        event.correction = text(event.correction)
        event.comment = text(event.comment)
    for kind, n in counts.items():
        event.redacted[kind] += n
    return counts


def _messages(messages: Iterable[common_pb2.ChatMessage], text: _Text) -> None:
    for message in messages:
        message.content = text(message.content)


def _tools(tools: Iterable[common_pb2.Tool], text: _Text) -> None:
    for tool in tools:
        tool.description = text(tool.description)
        tool.parameters_json = text(tool.parameters_json)
