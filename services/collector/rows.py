"""From Kafka record to ClickHouse row: one converter per captured topic.

Each converter takes the decoded event and returns its row as a list in the table's
``insert_columns`` order (checked by tests/unit/collector/test_rows.py). Anything a converter
cannot turn into a row raises EventDecodeError, and the record is dead-lettered, never retried.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cumulus.config.drift import SEVERITIES, severity_name
from cumulus.errors import EventDecodeError
from cumulus.kafka import topics
from cumulus.kafka.codec import decode_event
from cumulus.v1 import common_pb2, events_pb2
from services.collector.clickhouse import schema
from services.collector.clickhouse.schema import TableSpec

Row = list[Any]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DATETIME64_MIN = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
_DATETIME64_END = dt.datetime(2300, 1, 1, tzinfo=dt.UTC)
_ROUTE_MODES = {
    common_pb2.ROUTE_MODE_UNSPECIFIED: "unspecified",
    common_pb2.ROUTE_MODE_LIVE: "live",
    common_pb2.ROUTE_MODE_CANARY: "canary",
    common_pb2.ROUTE_MODE_SHADOW: "shadow",
    common_pb2.ROUTE_MODE_FALLBACK: "fallback",
    common_pb2.ROUTE_MODE_PROMOTED: "promoted",
}
_ADAPTER_STATUS = {
    events_pb2.ADAPTER_STATUS_UNSPECIFIED: "unspecified",
    events_pb2.ADAPTER_STATUS_TRAINING: "training",
    events_pb2.ADAPTER_STATUS_READY: "ready",
    events_pb2.ADAPTER_STATUS_REJECTED: "rejected",
    events_pb2.ADAPTER_STATUS_FAILED: "failed",
}


def timestamp(ts: Timestamp) -> dt.datetime:
    """A protobuf Timestamp as an aware UTC datetime (what insert_rows expects), ms precision.

    ValueError outside what a DateTime64 column holds (1900-2299): the record is dead-lettered,
    where ClickHouse would otherwise store a wrapped-around date."""
    value = _EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    if not _DATETIME64_MIN <= value < _DATETIME64_END:
        raise ValueError(f"timestamp {value.isoformat()} is outside 1900-2299")
    return value


def aware(value: dt.datetime) -> dt.datetime:
    """A datetime read back from ClickHouse as UTC (clickhouse-connect may hand it back naive)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _occurred(meta: common_pb2.EventMeta) -> dt.datetime:
    # An event without occurred_at would land in 1970 and vanish from every time-window query.
    if not meta.HasField("occurred_at"):
        raise EventDecodeError(f"event {meta.event_id} has no meta.occurred_at")
    return timestamp(meta.occurred_at)


def _messages_json(messages: Any) -> str:
    out = []
    for m in messages:
        item = {"role": m.role, "content": m.content}
        if m.name:
            item["name"] = m.name
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return json.dumps(out, ensure_ascii=False)


def _tools_json(tools: Any) -> str:
    out = []
    for t in tools:
        try:
            parameters = json.loads(t.parameters_json) if t.parameters_json else {}
        except json.JSONDecodeError as exc:
            raise EventDecodeError(f"tool {t.name!r} has parameters_json that is not JSON: {exc}") from exc
        out.append({"name": t.name, "description": t.description, "parameters": parameters})
    return json.dumps(out, ensure_ascii=False)


def _params_json(p: common_pb2.GenerationParams) -> str:
    params = {"max_tokens": p.max_tokens, "temperature": round(p.temperature, 6), "top_p": round(p.top_p, 6)}
    return json.dumps({**params, "stop": list(p.stop)} if p.stop else params)


def request_row(event: events_pb2.InferenceEvent) -> Row:
    meta, target = event.meta, event.route.target
    if event.status == common_pb2.STATUS_OK:
        status = "ok"
    elif event.status == common_pb2.STATUS_ERROR:
        status = event.error_code or "ERROR"
    else:
        status = "unspecified"  # a producer bug; counted as an error so it shows up
    return [
        meta.event_id,
        meta.tenant,
        meta.workflow,
        "fingerprint" if event.workflow_derived else "client",
        event.template_fingerprint,
        event.request_id,
        event.session_key,
        _occurred(meta),
        timestamp(meta.published_at) if meta.HasField("published_at") else _occurred(meta),
        target.model,
        target.adapter_id,
        target.adapter_version,
        _ROUTE_MODES.get(event.route.mode, "unspecified"),
        event.prompt_text,
        _messages_json(event.messages),
        _tools_json(event.tools),
        _params_json(event.params),
        event.response_text,
        event.usage.prompt_tokens,
        event.usage.completion_tokens,
        event.latency_ms,
        event.ttft_ms,
        status,
        event.error_message,
        event.candidate_error,
        dict(event.metadata),
        dict(event.redacted),
    ]


def verdict_row(event: events_pb2.Verdict) -> Row:
    meta = event.meta
    if not event.verdict_id:
        raise EventDecodeError(f"verdict {meta.event_id} has no verdict_id")
    return [
        meta.event_id,
        meta.tenant,
        meta.workflow,
        event.verdict_id,
        event.pair_id,
        event.adapter_id,
        _occurred(meta),
        event.grader,
        event.score,
        event.passed,
        event.details_json,
        event.live_latency_ms,
        event.candidate_latency_ms,
        event.candidate_error,
        event.reference or "live",
        event.live_score,
        event.live_passed,
        event.request_id,
    ]


def adapter_row(event: events_pb2.AdapterEvent) -> Row:
    meta = event.meta
    if not event.adapter_id:
        raise EventDecodeError(f"adapter event {meta.event_id} has no adapter_id")
    return [
        meta.event_id,
        meta.tenant,
        meta.workflow,
        event.adapter_id,
        event.candidate_id,
        event.dataset_id,
        event.base_model,
        _ADAPTER_STATUS.get(event.status, "unspecified"),
        event.progress,
        event.artifact_uri,
        event.lora_task_id,
        event.version,
        event.offline_score,
        event.gate_passed,
        dict(event.metrics),
        event.error,
        _occurred(meta),
    ]


def rollout_row(event: events_pb2.RolloutEvent) -> Row:
    meta = event.meta
    return [
        meta.event_id,
        meta.tenant,
        meta.workflow,
        event.rollout_id,
        event.adapter_id,
        _occurred(meta),
        event.from_state,
        event.to_state,
        event.step,
        event.weight,
        event.reason,
        meta.producer,
        dict(event.evidence),
    ]


def drift_row(event: events_pb2.DriftSignal) -> Row:
    meta = event.meta
    severity = severity_name(event.severity)
    if severity == "none":
        raise ValueError(f"drift severity {event.severity} is not one of 1..{len(SEVERITIES)}")
    return [
        meta.event_id,
        meta.tenant,
        meta.workflow,
        event.adapter_id,
        event.dataset_id,
        _occurred(meta),
        event.signal,
        severity,
        event.detail,
        dict(event.evidence),
    ]


def audit_row(pair: events_pb2.ShadowPair) -> Row | None:
    """The live answer of a pair against the live model asked in shadow (the anchor: a promoted
    adapter's audit, v1 and v2 graded against live); None for every other pair (a candidate's
    shadow copy against the answer the user got) and for a live copy that failed."""
    live = pair.live
    if live.route.mode != common_pb2.ROUTE_MODE_SHADOW or live.status != common_pb2.STATUS_OK:
        return None
    meta = pair.meta
    return [
        meta.event_id,
        meta.tenant,
        meta.workflow,
        pair.request_id,
        pair.adapter_id or pair.candidate.route.target.adapter_id,
        _occurred(meta),
        live.text,
        live.usage.completion_tokens,
        live.latency_ms,
        dict(pair.redacted),
    ]


def feedback_row(event: events_pb2.FeedbackEvent) -> Row:
    meta = event.meta
    return [
        meta.event_id,
        meta.tenant,
        meta.workflow,
        event.request_id,
        _occurred(meta),
        event.score if event.HasField("score") else None,
        event.label,
        event.correction,
        event.comment,
        dict(event.redacted),
    ]


@dataclass(frozen=True)
class Capture:
    """A captured topic: where its rows go and how a record becomes one."""

    topic: str
    table: TableSpec
    to_row: Callable[[Any], Row | None]

    def row(self, value: bytes | None, screen: Callable[[Message], bool] | None = None) -> Row | None:
        """Decode, screen (redact in place; False: drop it, it was erased) and convert one record
        value; None: nothing of it is stored (not an error); EventDecodeError means dead-letter it."""
        event: Message = decode_event(self.topic, value)
        if screen is not None and not screen(event):
            return None
        try:
            return self.to_row(event)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp out of range
            raise EventDecodeError(f"{type(event).__name__} cannot be stored: {exc}") from exc


CAPTURES: dict[str, Capture] = {
    c.topic: c
    for c in (
        Capture(topics.INFERENCE.name, schema.REQUESTS, request_row),
        Capture(topics.VERDICTS.name, schema.VERDICTS, verdict_row),
        Capture(topics.ADAPTERS.name, schema.ADAPTERS, adapter_row),
        Capture(topics.ROLLOUTS.name, schema.ROLLOUT_EVENTS, rollout_row),
        Capture(topics.FEEDBACK.name, schema.FEEDBACK, feedback_row),
        Capture(topics.DRIFT.name, schema.DRIFT_SIGNALS, drift_row),
        Capture(topics.SHADOW.name, schema.AUDIT_ANSWERS, audit_row),
    )
}
"""Topic name -> capture, for every topic the collector stores."""
