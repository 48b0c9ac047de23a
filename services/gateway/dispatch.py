"""Serving one admitted request: its route, the canary fallback, its shadow copy, its event.

Both front doors (cumulus.v1.Gateway and the KServe v2 drop-in) admit a request into a ``Call``
and hand it here, so quotas, routing and capture are identical for both:

0. the tenant's quota admits the request or refuses it, before any work (quotas.py);
1. shadow copies start beside the request when its route plan has them (shadow.py);
2. the primary target answers (targets.py: the prompt its adapter was trained on, the LoRA
   resend); when it is a canary candidate and fails before any output (its prompt spec
   included), the live model answers instead (mode FALLBACK) and the candidate's error is
   recorded;
3. when the request ends, however it ends, exactly one InferenceEvent is published (its metadata
   names the parts a pruned adapter's prompt left out), the metrics are updated and the live
   outcome is handed to the shadow copy.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from cumulus.kafka import topics
from cumulus.logs import get_logger
from cumulus.v1 import common_pb2
from services.gateway import metrics
from services.gateway.calls import Call, Outcome
from services.gateway.capture import EventSink, inference_event
from services.gateway.feedback import RecentRequests
from services.gateway.quotas import TenantQuotas
from services.gateway.shadow import ShadowHandle, ShadowRunner
from services.gateway.targets import Answer, TargetCaller

log = get_logger("gateway")


class Dispatcher:
    """Runs admitted calls (see the module docstring)."""

    def __init__(
        self,
        caller: TargetCaller,
        sink: EventSink,
        shadows: ShadowRunner,
        recent: RecentRequests,
        quotas: TenantQuotas,
    ) -> None:
        self.caller = caller
        self.sink = sink
        self.shadows = shadows
        self.recent = recent
        self.quotas = quotas

    async def run(self, call: Call) -> AsyncGenerator[Answer, None]:
        """Yield the answering model's responses; ``call.outcome`` holds the totals afterwards."""
        lease = self.quotas.admit(call.tenant)  # ResourceExhausted: refused before any work
        plan = call.plan
        outcome = Outcome(route=plan.primary)
        call.outcome = outcome
        try:
            shadow = self.shadows.start(call, plan.shadow, plan.anchor)
        except BaseException:
            lease.release()
            raise
        try:
            try:
                async for answer in self._attempt(call, plan.primary.target, outcome, plan.is_candidate):
                    yield answer
            except Exception as exc:
                if not plan.is_candidate or outcome.answered:
                    raise
                self._fall_back(call, outcome, exc)
                async for answer in self._attempt(call, plan.live, outcome, False):
                    yield answer
        except BaseException as exc:  # also cancellation: the request still gets its event
            outcome.error = exc
            raise
        finally:
            lease.release(outcome.prompt_tokens + outcome.completion_tokens)
            self._finish(call, outcome, shadow)

    def _attempt(
        self, call: Call, target: common_pb2.RouteTarget, outcome: Outcome, candidate: bool
    ) -> AsyncIterator[Answer]:
        return self.caller.stream(call, target, outcome, candidate=candidate, timeout_s=call.timeout_s)

    def _fall_back(self, call: Call, outcome: Outcome, exc: Exception) -> None:
        candidate = call.plan.primary.target
        outcome.candidate_error = f"{type(exc).__name__}: {exc}"[:2000]
        outcome.route = common_pb2.Route(target=call.plan.live, mode=common_pb2.ROUTE_MODE_FALLBACK)
        log.warning(
            "candidate.failed",
            workflow=call.workflow.name,
            adapter=candidate.adapter_id,
            request_id=call.request_id,
            error=outcome.candidate_error[:300],
        )

    def _finish(self, call: Call, outcome: Outcome, shadow: ShadowHandle | None) -> None:
        outcome.latency_ms = call.elapsed_ms()
        if shadow is not None:
            shadow.live_finished(outcome)
        self.recent.remember(call, outcome)
        self.sink.publish(topics.INFERENCE, inference_event(call, outcome))
        metrics.observe(call, outcome)
        if outcome.error is not None:
            log.warning(
                "request.failed",
                api=call.api,
                workflow=call.workflow.name,
                adapter=outcome.route.target.adapter_id,
                request_id=call.request_id,
                mode=metrics.mode_name(outcome.route),
                code=outcome.error_code,
                error=str(outcome.error)[:300],
            )
        else:
            log.debug(
                "request.done",
                api=call.api,
                workflow=call.workflow.name,
                adapter=outcome.route.target.adapter_id,
                request_id=call.request_id,
                mode=metrics.mode_name(outcome.route),
                latency_ms=round(outcome.latency_ms, 2),
            )
