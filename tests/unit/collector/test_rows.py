"""Record -> row converters: column order, field mapping, and what gets dead-lettered."""

from __future__ import annotations

import datetime as dt

import pytest

from cumulus.errors import EventDecodeError
from cumulus.kafka import codec, topics
from cumulus.v1 import common_pb2, events_pb2
from services.collector.rows import CAPTURES
from tests.integration.collector_process import inference_event

META = dict(tenant="acme", workflow="wf", producer="test")


def audit_pair(live_mode: int = common_pb2.ROUTE_MODE_SHADOW) -> events_pb2.ShadowPair:
    """A promoted adapter's answer and the live model's, asked in shadow (the router's audit)."""
    return events_pb2.ShadowPair(
        meta=codec.new_meta(**META),
        pair_id="p1",
        request_id="r1",
        adapter_id="ad-1",
        live=events_pb2.ShadowOutput(
            route=common_pb2.Route(target=common_pb2.RouteTarget(model="live"), mode=live_mode),
            text="the live answer",
            status=common_pb2.STATUS_OK,
        ),
        candidate=events_pb2.ShadowOutput(text="the adapter's answer", status=common_pb2.STATUS_OK),
    )


def samples() -> dict[str, object]:
    return {
        topics.INFERENCE.name: inference_event("wf", 1),
        topics.VERDICTS.name: events_pb2.Verdict(meta=codec.new_meta(**META), verdict_id="v1", score=0.5),
        topics.ADAPTERS.name: events_pb2.AdapterEvent(
            meta=codec.new_meta(**META),
            adapter_id="ad-1",
            status=events_pb2.ADAPTER_STATUS_READY,
            metrics={"f1": 0.9},
        ),
        topics.ROLLOUTS.name: events_pb2.RolloutEvent(meta=codec.new_meta(**META), to_state="canary", step=2),
        topics.FEEDBACK.name: events_pb2.FeedbackEvent(
            meta=codec.new_meta(**META), request_id="r1", label="bad"
        ),
        topics.SHADOW.name: audit_pair(),
        topics.DRIFT.name: events_pb2.DriftSignal(
            meta=codec.new_meta(**META),
            adapter_id="ad-1",
            signal="new_tools",
            severity=events_pb2.DRIFT_SEVERITY_WARNING,
            evidence={"share": 0.2},
        ),
    }


@pytest.mark.parametrize("topic", list(CAPTURES))
def test_every_row_matches_its_table_columns(topic: str) -> None:
    capture = CAPTURES[topic]
    row = capture.row(codec.encode_event(samples()[topic]))  # type: ignore[arg-type]
    assert row is not None and len(row) == len(capture.table.insert_columns)
    columns = dict(zip(capture.table.insert_columns, row, strict=True))
    assert columns["tenant"] == "acme" and columns["workflow"] == "wf"


def test_inference_row_fields() -> None:
    event = inference_event("wf", 3, ok=False)
    event.workflow_derived = True
    event.meta.published_at.FromSeconds(1_700_000_001)
    event.meta.occurred_at.FromSeconds(1_700_000_000)
    capture = CAPTURES[topics.INFERENCE.name]
    row = dict(zip(capture.table.insert_columns, capture.row(codec.encode_event(event)), strict=True))
    assert row["status"] == "UNAVAILABLE" and row["workflow_source"] == "fingerprint"
    assert row["occurred_at"] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert (row["published_at"] - row["occurred_at"]).total_seconds() == 1
    assert row["model"] == "live" and row["route_mode"] == "live"
    assert '"name": "route_ticket"' in row["tools"] and '"role": "system"' in row["messages"]
    assert row["prompt_tokens"] == 153


def test_feedback_without_a_score_stores_null() -> None:
    capture = CAPTURES[topics.FEEDBACK.name]
    event = events_pb2.FeedbackEvent(meta=codec.new_meta(**META), request_id="r1")
    row = dict(zip(capture.table.insert_columns, capture.row(codec.encode_event(event)), strict=True))
    assert row["score"] is None


@pytest.mark.parametrize(
    "value",
    [
        b"\x08garbage",
        b"",
        codec.encode_event(events_pb2.InferenceEvent(request_id="no meta")),
        codec.encode_event(
            events_pb2.InferenceEvent(
                meta=common_pb2.EventMeta(event_id="e1", workflow="wf")
            )  # no occurred_at
        ),
        codec.encode_event(
            events_pb2.InferenceEvent(
                meta=codec.new_meta(**META), tools=[common_pb2.Tool(name="t", parameters_json="{not json")]
            )
        ),
    ],
)
def test_unusable_records_raise_for_the_dead_letter(value: bytes) -> None:
    with pytest.raises(EventDecodeError):
        CAPTURES[topics.INFERENCE.name].row(value)


def test_a_drift_signal_without_a_severity_is_dead_lettered() -> None:
    signal = events_pb2.DriftSignal(meta=codec.new_meta(**META), adapter_id="ad-1", signal="template")
    with pytest.raises(EventDecodeError, match="severity"):
        CAPTURES[topics.DRIFT.name].row(codec.encode_event(signal))


def test_only_an_audits_live_answer_is_kept_from_the_shadow_topic() -> None:
    capture = CAPTURES[topics.SHADOW.name]
    row = capture.row(codec.encode_event(audit_pair()))
    assert row is not None
    kept = dict(zip(capture.table.insert_columns, row, strict=True))
    assert (kept["request_id"], kept["adapter_id"], kept["response"]) == ("r1", "ad-1", "the live answer")
    # A rollout's shadow pair: live served the request, the candidate was the copy.
    assert capture.row(codec.encode_event(audit_pair(common_pb2.ROUTE_MODE_LIVE))) is None
    failed = audit_pair()
    failed.live.status = common_pb2.STATUS_ERROR
    assert capture.row(codec.encode_event(failed)) is None
