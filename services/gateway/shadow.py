"""Shadow traffic: a fire-and-forget copy of a request to a candidate adapter, graded later.

After promotion the roles turn: the adapter answers the user and an audit sample is copied to
the live model. The pair is still written with the live model's answer as ``live`` and the
adapter's as ``candidate`` (so the judge and the router need not care which one answered), and
when the live copy fails there is nothing to grade the adapter against: no pair is written.

The copy goes to its target the way a canary request would (targets.py). It runs beside the
live request in its own task and is never awaited by it: the client's response is neither
delayed, changed nor failed by the candidate, whatever it does. Concurrency is bounded by a fixed
number of slots; when all are busy the copy is skipped (and counted), never queued, so a slow or
hanging candidate cannot pile up work. A copy that takes longer than the shadow timeout is
abandoned and graded as a candidate error. Once both sides have finished, one ShadowPair goes to
cumulus.shadow.v1 for the judge.
"""

from __future__ import annotations

import asyncio
import contextlib

from cumulus.kafka import topics
from cumulus.logs import get_logger
from cumulus.trtllm.errors import DeadlineExceeded
from cumulus.v1 import common_pb2
from services.gateway import metrics
from services.gateway.calls import Call, Outcome
from services.gateway.capture import EventSink, shadow_pair
from services.gateway.targets import TargetCaller

log = get_logger("gateway")


class ShadowHandle:
    """The link from a live request to its shadow copy: the live side reports its outcome here."""

    def __init__(self) -> None:
        self.live: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def live_finished(self, outcome: Outcome) -> None:
        if not self.live.done():
            self.live.set_result(outcome)


class ShadowRunner:
    """Starts shadow copies within ``concurrency`` slots (see the module docstring)."""

    def __init__(self, caller: TargetCaller, sink: EventSink, *, concurrency: int, timeout_s: float) -> None:
        self.caller = caller
        self.sink = sink
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, call: Call, target: common_pb2.RouteTarget) -> ShadowHandle | None:
        """Start a copy of ``call`` to ``target`` now, or skip it when every slot is busy."""
        if self.in_flight >= self.concurrency:
            metrics.SHADOW.labels("skipped").inc()
            return None
        self.in_flight += 1
        metrics.SHADOW_IN_FLIGHT.inc()
        handle = ShadowHandle()
        task = asyncio.create_task(self._run(call, target, handle), name=f"shadow-{call.request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return handle

    async def drain(self, timeout_s: float) -> None:
        """Give running copies ``timeout_s`` to finish (on shutdown), then cancel the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, call: Call, target: common_pb2.RouteTarget, handle: ShadowHandle) -> None:
        audit = is_audit(call, target)
        copy = Outcome(route=common_pb2.Route(target=target, mode=common_pb2.ROUTE_MODE_SHADOW))
        outcome_label = "ok"
        try:
            try:
                await asyncio.wait_for(self._collect(call, target, copy, audit), self.timeout_s)
            except TimeoutError:
                copy.error = DeadlineExceeded(
                    f"shadow copy to {target.adapter_id or target.model} took over {self.timeout_s}s"
                )
                outcome_label = "timeout"
            except Exception as exc:  # the candidate's failure is data for the judge, nothing more
                copy.error = exc
                outcome_label = "error"
            copy.latency_ms = call.elapsed_ms()
            answered = await asyncio.wait_for(handle.live, self.timeout_s)
            if audit:
                outcome_label = f"audit_{outcome_label}"
                if copy.error is None:
                    self.sink.publish(topics.SHADOW, shadow_pair(call, copy, audited(call, answered)))
                metrics.SHADOW.labels(outcome_label).inc()
                return
            candidate = copy
            self.sink.publish(topics.SHADOW, shadow_pair(call, answered, candidate))
            metrics.SHADOW.labels(outcome_label).inc()
            if candidate.error is not None:
                log.info(
                    "shadow.candidate_failed",
                    workflow=call.workflow.name,
                    adapter=target.adapter_id,
                    request_id=call.request_id,
                    error=str(candidate.error)[:300],
                )
        except Exception:
            metrics.SHADOW.labels("lost").inc()
            log.exception(
                "shadow.lost",
                workflow=call.workflow.name,
                adapter=target.adapter_id,
                request_id=call.request_id,
            )
        finally:
            self.in_flight -= 1
            metrics.SHADOW_IN_FLIGHT.dec()

    async def _collect(self, call: Call, target: common_pb2.RouteTarget, copy: Outcome, audit: bool) -> None:
        async for _ in self.caller.stream(call, target, copy, candidate=not audit, timeout_s=self.timeout_s):
            pass


def is_audit(call: Call, target: common_pb2.RouteTarget) -> bool:
    """A copy to the live model of a request a promoted adapter answers (the router's audit)."""
    primary = call.plan.primary
    return primary.mode == common_pb2.ROUTE_MODE_PROMOTED and not target.adapter_id


def audited(call: Call, answered: Outcome) -> Outcome:
    """The adapter's side of an audit pair: its answer, or its failure where live answered instead."""
    if not answered.candidate_error:
        return answered
    failed = Outcome(route=call.plan.primary, latency_ms=answered.latency_ms)
    failed.error = RuntimeError(answered.candidate_error)
    return failed
