"""Shadow traffic: fire-and-forget copies of a request, graded later.

A request may be copied to two targets beside the one that answers it (its route plan says which):

- ``shadow``, a candidate adapter: its answer is paired with the answer the user got;
- ``anchor``, the live model, asked while an adapter answers or is shadowed: its answer is the
  reference of a pair with the answer the user got (a promoted adapter's audit, or v1's answer
  while v2 is rolled out over it) and of a pair with the shadow copy's (v2 against live as well as
  against v1). When the live copy fails there is nothing to grade against: those pairs are not
  written.

Every pair is written with the reference answer as ``live`` and the graded one as ``candidate``
(so the judge and the router need not care which one answered the user); the reference side's
route names the adapter that gave it, if any.

A copy goes to its target the way a canary request would (targets.py). Copies run beside the
request in their own task and are never awaited by it: the client's response is neither delayed,
changed nor failed by them, whatever they do. Concurrency is bounded by a fixed number of slots
(one per copy); when they are busy the copies are skipped (and counted), never queued, so a slow
or hanging candidate cannot pile up work. A copy that takes longer than the shadow timeout is
abandoned and graded as a candidate error. Once every side has finished, the pairs go to
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

    def start(
        self, call: Call, shadow: common_pb2.RouteTarget | None, anchor: common_pb2.RouteTarget | None = None
    ) -> ShadowHandle | None:
        """Start the copies of ``call`` now, or skip them when the slots are busy (None: no copy)."""
        copies = int(shadow is not None) + int(anchor is not None)
        if not copies:
            return None
        if self.in_flight + copies > self.concurrency:
            metrics.SHADOW.labels("skipped").inc(copies)
            return None
        self.in_flight += copies
        metrics.SHADOW_IN_FLIGHT.inc(copies)
        handle = ShadowHandle()
        task = asyncio.create_task(self._run(call, shadow, anchor, handle), name=f"shadow-{call.request_id}")
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

    async def _run(
        self,
        call: Call,
        shadow: common_pb2.RouteTarget | None,
        anchor: common_pb2.RouteTarget | None,
        handle: ShadowHandle,
    ) -> None:
        copies = {
            role: self._copy(call, target, candidate=role == "shadow")
            for role, target in (("shadow", shadow), ("anchor", anchor))
            if target is not None
        }
        try:
            done = dict(zip(copies, await asyncio.gather(*copies.values()), strict=True))
            answered = await asyncio.wait_for(handle.live, self.timeout_s)
            candidate, reference = done.get("shadow"), done.get("anchor")
            if candidate is not None:
                self.sink.publish(topics.SHADOW, shadow_pair(call, answered, candidate))
                self._log_failure(call, candidate)
            if reference is not None and reference.error is None:
                if call.plan.primary.target.adapter_id:  # the answer the user got, against live
                    self.sink.publish(topics.SHADOW, shadow_pair(call, reference, audited(call, answered)))
                if candidate is not None:  # the candidate against live as well
                    self.sink.publish(topics.SHADOW, shadow_pair(call, reference, candidate))
        except Exception:
            metrics.SHADOW.labels("lost").inc(len(copies))
            log.exception("shadow.lost", workflow=call.workflow.name, request_id=call.request_id)
        finally:
            self.in_flight -= len(copies)
            metrics.SHADOW_IN_FLIGHT.dec(len(copies))

    async def _copy(self, call: Call, target: common_pb2.RouteTarget, *, candidate: bool) -> Outcome:
        """One copy's outcome: its answer, or the error or timeout it ended with."""
        copy = Outcome(route=common_pb2.Route(target=target, mode=common_pb2.ROUTE_MODE_SHADOW))
        label = "ok"
        try:
            await asyncio.wait_for(self._collect(call, target, copy, candidate), self.timeout_s)
        except TimeoutError:
            copy.error = DeadlineExceeded(
                f"shadow copy to {target.adapter_id or target.model} took over {self.timeout_s}s"
            )
            label = "timeout"
        except Exception as exc:  # the copy's failure is data for the judge, nothing more
            copy.error = exc
            label = "error"
        copy.latency_ms = call.elapsed_ms()
        metrics.SHADOW.labels(label if candidate else f"anchor_{label}").inc()
        return copy

    async def _collect(
        self, call: Call, target: common_pb2.RouteTarget, copy: Outcome, candidate: bool
    ) -> None:
        async for _ in self.caller.stream(call, target, copy, candidate=candidate, timeout_s=self.timeout_s):
            pass

    @staticmethod
    def _log_failure(call: Call, copy: Outcome) -> None:
        if copy.error is not None:
            log.info(
                "shadow.candidate_failed",
                workflow=call.workflow.name,
                adapter=copy.route.target.adapter_id,
                request_id=call.request_id,
                error=str(copy.error)[:300],
            )


def audited(call: Call, answered: Outcome) -> Outcome:
    """The adapter's side of a pair against live: its answer, or its failure where live answered
    instead (a canary's fallback)."""
    if not answered.candidate_error:
        return answered
    failed = Outcome(route=call.plan.primary, latency_ms=answered.latency_ms)
    failed.error = RuntimeError(answered.candidate_error)
    return failed
