"""cumulus.v1.Gateway: Generate, GenerateStream and Feedback.

A request is authenticated (its tenant), validated, assigned a workflow (named or derived from its
template), routed, and then served by the Dispatcher like every other request. Each target gets
the prompt its model and adapter expect: an adapter trained on pruned prompts gets them pruned
(prompt_specs.py), while the captured event keeps the whole messages and tools. Feedback is taken
only for a request this gateway remembers answering for the same tenant, and a correction only
when it has the shape of that answer (feedback.py); feedback sent again for one request replaces
the earlier one downstream (the latest wins). Errors are raised as CumulusErrors;
error_mapping.ErrorMapping turns them into gRPC statuses.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc

from cumulus.kafka import topics
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2, gateway_pb2_grpc
from services.gateway.calls import Call
from services.gateway.capture import feedback_event
from services.gateway.core import GatewayCore
from services.gateway.feedback import check_correction
from services.gateway.rendering import ChatPrompt, chat_messages, chat_tools
from services.gateway.validation import validate_feedback, validate_generate
from services.gateway.workflows import resolve_chat


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    """The client-facing API (see the module docstring)."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    async def Generate(
        self, request: gateway_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GenerateResponse:
        call = self._admit(request, context, api="generate", stream=False)
        async for _ in self.core.dispatcher.run(call):
            pass
        outcome = call.outcome
        assert outcome is not None
        return gateway_pb2.GenerateResponse(
            request_id=call.request_id,
            workflow=call.workflow.name,
            text=outcome.text,
            route=outcome.route,
            usage=outcome.usage,
            latency_ms=outcome.latency_ms,
        )

    async def GenerateStream(
        self, request: gateway_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.GenerateChunk]:
        call = self._admit(request, context, api="generate_stream", stream=True)
        async for _, delta in self.core.dispatcher.run(call):
            if delta is not None and delta.text:
                yield gateway_pb2.GenerateChunk(request_id=call.request_id, delta=delta.text)
        outcome = call.outcome
        assert outcome is not None
        yield gateway_pb2.GenerateChunk(
            request_id=call.request_id,
            finished=True,
            workflow=call.workflow.name,
            route=outcome.route,
            usage=outcome.usage,
            latency_ms=outcome.latency_ms,
        )

    async def Feedback(
        self, request: gateway_pb2.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.FeedbackResponse:
        tenant = self.core.auth.tenant(context)
        request.DiscardUnknownFields()
        validate_feedback(request, self.core.limits.max_prompt_chars)
        answered = self.core.recent.lookup(request.request_id, tenant)
        check_correction(request.correction, answered)
        event = feedback_event(request, tenant, answered.workflow)
        self.core.sink.publish(topics.FEEDBACK, event)
        return gateway_pb2.FeedbackResponse(event_id=event.meta.event_id)

    def _admit(
        self,
        request: gateway_pb2.GenerateRequest,
        context: grpc.aio.ServicerContext,
        *,
        api: str,
        stream: bool,
    ) -> Call:
        core = self.core
        tenant = core.auth.tenant(context)
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
            timeout_s=core.timeout_s(context),
            capture=capture,
        )
