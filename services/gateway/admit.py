"""Admission shared by every chat front door (gRPC ``Generate``, OpenAI ``/v1/chat/completions``).

A front door authenticates the caller (its tenant) and turns its own wire format into a
``GenerateRequest``; from there one path admits it: unknown fields dropped, validated, assigned a
workflow (named or derived from its template), routed, its prompt prepared per model and the
request half of its inference event filled. The Dispatcher then serves the ``Call`` the same way
whichever door it came through. Feedback likewise: taken only for a request this gateway
remembers answering for the same tenant, and a correction only when it has that answer's shape.
"""

from __future__ import annotations

import uuid

from cumulus.kafka import topics
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2
from services.gateway.calls import Call
from services.gateway.capture import feedback_event
from services.gateway.core import GatewayCore
from services.gateway.feedback import check_correction
from services.gateway.rendering import ChatPrompt, chat_messages, chat_tools
from services.gateway.validation import validate_feedback, validate_generate
from services.gateway.workflows import resolve_chat


def admit_chat(
    core: GatewayCore,
    tenant: str,
    request: gateway_pb2.GenerateRequest,
    *,
    api: str,
    stream: bool,
    timeout_s: float,
) -> Call:
    """The admitted ``Call`` for ``tenant``'s ``request``; raises InvalidArgument naming the field."""
    # Fields this gateway does not know would otherwise travel into the captured event.
    request.DiscardUnknownFields()
    valid = validate_generate(request, core.limits)
    request_id = request.request_id or uuid.uuid4().hex
    workflow = resolve_chat(
        tenant,
        request.workflow,
        [(m.role, m.content) for m in request.messages],
        [t.name for t in request.tools],
    )
    plan = core.book.plan(tenant, workflow.name, request.session_key or request_id)
    sampling = valid.sampling
    prompt = ChatPrompt(
        core.renderer,
        chat_messages(request.messages),
        chat_tools(request.tools, valid.tool_schemas),
        sampling,
        stream=stream,
        request_id=request_id,
    )
    capture = events_pb2.InferenceEvent(
        messages=request.messages,
        tools=request.tools,
        params=common_pb2.GenerationParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=sampling.stop,
        ),
        metadata=request.metadata,
    )
    return Call(
        api=api,
        tenant=tenant,
        workflow=workflow,
        request_id=request_id,
        session_key=request.session_key,
        plan=plan,
        prompt=prompt,
        timeout_s=timeout_s,
        capture=capture,
    )


def accept_feedback(core: GatewayCore, tenant: str, request: gateway_pb2.FeedbackRequest) -> str:
    """Publish ``tenant``'s feedback on a request this gateway answered; the event's id."""
    request.DiscardUnknownFields()
    validate_feedback(request, core.limits.max_prompt_chars)
    answered = core.recent.lookup(request.request_id, tenant)
    check_correction(request.correction, answered)
    event = feedback_event(request, tenant, answered.workflow)
    core.sink.publish(topics.FEEDBACK, event)
    return event.meta.event_id
