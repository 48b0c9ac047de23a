"""The events the gateway publishes: one InferenceEvent per finished request, ShadowPairs, feedback.

Publishing goes through an ``EventSink`` (the shared EventPublisher in production): ``publish`` is
synchronous and never blocks or raises for Kafka trouble, so capturing a request never delays or
fails its response.
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf.message import Message

from cumulus.kafka import codec
from cumulus.kafka.topics import TopicSpec
from cumulus.privacy.policy import TenantPrivacy
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2
from services.gateway.calls import Call, Outcome

PRODUCER = "gateway"
PRUNED_METADATA = "cumulus.prompt_pruned"
"""InferenceEvent metadata key: the parts (comma-separated) the answering adapter's prompt was rendered
without. Only ``prompt_text`` lacks them: the event's ``messages`` and ``tools`` stay whole."""


class EventSink(Protocol):
    """Where events go: cumulus.kafka.publisher.EventPublisher, or a list in tests."""

    def publish(self, spec: TopicSpec, event: Message) -> None: ...


class RedactingSink:
    """Redacts the events of tenants whose ``privacy.redact`` is ``capture`` before they are
    published, so Kafka never holds their raw text (cumulus/privacy/policy.py).

    It redacts a copy: the request's own messages may still be rendered for a shadow copy to the
    candidate after its InferenceEvent is out, and the models must get the raw prompt."""

    def __init__(self, sink: EventSink, privacy: TenantPrivacy) -> None:
        self.sink = sink
        self.privacy = privacy

    def publish(self, spec: TopicSpec, event: Message) -> None:
        tenant = getattr(getattr(event, "meta", None), "tenant", "")
        if self.privacy.redacts(tenant, "capture") and hasattr(event, "redacted"):
            copy = type(event)()
            copy.CopyFrom(event)
            self.privacy.redact(copy, "capture")
            event = copy
        self.sink.publish(spec, event)


def inference_event(call: Call, outcome: Outcome) -> events_pb2.InferenceEvent:
    """The cumulus.inference.v1 event of a finished request."""
    event = call.capture
    event.meta.CopyFrom(codec.new_meta(tenant=call.tenant, workflow=call.workflow.name, producer=PRODUCER))
    event.request_id = call.request_id
    event.session_key = call.session_key
    event.prompt_text = outcome.prompt_text
    if outcome.pruned:
        event.metadata[PRUNED_METADATA] = ",".join(outcome.pruned)
    event.response_text = outcome.text
    event.route.CopyFrom(outcome.route)
    event.usage.CopyFrom(outcome.usage)
    event.latency_ms = outcome.latency_ms
    event.ttft_ms = outcome.ttft_ms
    event.template_fingerprint = call.workflow.fingerprint
    event.workflow_derived = call.workflow.derived
    event.candidate_error = outcome.candidate_error
    if outcome.error is None:
        event.status = common_pb2.STATUS_OK
    else:
        event.status = common_pb2.STATUS_ERROR
        event.error_code = outcome.error_code
        event.error_message = str(outcome.error)[:2000]
    return event


def shadow_output(outcome: Outcome) -> events_pb2.ShadowOutput:
    """One side of a shadow pair."""
    failed = outcome.error is not None
    return events_pb2.ShadowOutput(
        route=outcome.route,
        text=outcome.text,
        usage=outcome.usage,
        latency_ms=outcome.latency_ms,
        status=common_pb2.STATUS_ERROR if failed else common_pb2.STATUS_OK,
        error_message=str(outcome.error)[:2000] if failed else "",
    )


def shadow_pair(call: Call, live: Outcome, candidate: Outcome) -> events_pb2.ShadowPair:
    """The cumulus.shadow.v1 event comparing the live answer with the candidate's, same prompt."""
    pair = events_pb2.ShadowPair(
        meta=codec.new_meta(tenant=call.tenant, workflow=call.workflow.name, producer=PRODUCER),
        pair_id=codec.new_event_id(),
        request_id=call.request_id,
        adapter_id=candidate.route.target.adapter_id,
        live=shadow_output(live),
        candidate=shadow_output(candidate),
    )
    if call.capture.messages:
        pair.messages.extend(call.capture.messages)
        pair.tools.extend(call.capture.tools)
    else:  # a raw prompt (KServe drop-in): the judge still sees what was asked, as one user turn
        pair.messages.add(role="user", content=live.prompt_text)
    return pair


def feedback_event(
    request: gateway_pb2.FeedbackRequest, tenant: str, workflow: str
) -> events_pb2.FeedbackEvent:
    """The cumulus.feedback.v1 event of one Feedback call."""
    event = events_pb2.FeedbackEvent(
        meta=codec.new_meta(tenant=tenant, workflow=workflow, producer=PRODUCER),
        request_id=request.request_id,
        label=request.label,
        correction=request.correction,
        comment=request.comment,
    )
    if request.HasField("score"):
        event.score = request.score
    return event
