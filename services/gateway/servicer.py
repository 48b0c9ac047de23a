"""cumulus.v1.Gateway: Generate, GenerateStream and Feedback.

A request is authenticated (its tenant), admitted like a request of any chat front door
(admit.py: validated, assigned a workflow, routed) and served by the Dispatcher. Each target gets
the prompt its model and adapter expect: an adapter trained on pruned prompts gets them pruned
(prompt_specs.py), while the captured event keeps the whole messages and tools. Feedback sent
again for one request replaces the earlier one downstream (the latest wins). Errors are raised as
CumulusErrors; error_mapping.ErrorMapping turns them into gRPC statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cumulus.v1 import gateway_pb2, gateway_pb2_grpc
from services.gateway.admit import accept_feedback, admit_chat
from services.gateway.calls import Call
from services.gateway.core import GatewayCore


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
        event_id = accept_feedback(self.core, self.core.auth.tenant(context), request)
        return gateway_pb2.FeedbackResponse(event_id=event_id)

    def _admit(
        self,
        request: gateway_pb2.GenerateRequest,
        context: grpc.aio.ServicerContext,
        *,
        api: str,
        stream: bool,
    ) -> Call:
        tenant = self.core.auth.tenant(context)
        timeout_s = self.core.timeout_s(context.time_remaining())
        return admit_chat(self.core, tenant, request, api=api, stream=stream, timeout_s=timeout_s)
