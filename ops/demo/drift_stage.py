"""`cumulus demo --drift`: the application changes under its promoted adapter, and the loop follows.

After the BFCL workload's adapter is promoted, the application starts asking questions of another
BFCL category (``live_simple``: functions real users contributed) with their own tools, under the
same system prompt and workflow. The adapter learnt the first app's tools and is served without
the tool docs, so it cannot answer them. The stage then only sends that traffic and records what
the services do about it, from their own events:

1. drift: the collector's watch names ``new_tools`` by severity and the router acts on each; the
   stage sends the new traffic until the promoted adapter is rolled back, and counts the answers
   the adapter served meanwhile that BFCL's checker finds wrong (degraded answers served);
2. retry: live answers the new traffic again; once the workflow's live answers have grown by
   ``collector.detection.retry_growth`` the collector nominates it again;
3. v2: trained on the fresh dataset (old and new tools), gated offline, rolled out over what
   serves now and promoted, or stopped with the reason the services gave.

Every time in the report is counted from the first drifted request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from cumulus.config.drift import severity_name
from cumulus.rollout_states import PROMOTED, ROLLED_BACK
from cumulus.v1 import events_pb2, gateway_pb2
from ops.demo.bfcl import BfclItem, load_items
from ops.demo.client import Answer
from ops.demo.narrow import narrow_app
from ops.demo.observer import Seen
from ops.demo.workloads.bfcl import TOOLS, BfclWorkload

if TYPE_CHECKING:
    from ops.demo.runner import DemoRun

DRIFT_CATEGORY = "live_simple"


class DriftedBfcl(BfclWorkload):
    """The BFCL app once its users ask other things: ``live_simple`` questions and tools, sent to
    the workflow the gateway derived for the first app (the same application, grown)."""

    name: ClassVar[str] = "bfcl-drift"
    summary: ClassVar[str] = f"the BFCL app's traffic moves to {DRIFT_CATEGORY} questions and their tools"

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow

    def items(self, capture: int, held_out: int) -> tuple[list[BfclItem], list[BfclItem]]:
        return narrow_app(load_items(DRIFT_CATEGORY), TOOLS, capture, held_out)

    def request(self, item: BfclItem, request_id: str) -> gateway_pb2.GenerateRequest:
        request = super().request(item, request_id)
        request.workflow = self.workflow
        return request


async def run_drift(run: DemoRun, seen: Seen, adapter_id: str) -> dict[str, Any]:
    """The stage (see the module docstring) after ``adapter_id`` was promoted; its report."""
    profile, say = run.profile, run.say
    workload = DriftedBfcl(run.workflow)
    fresh, later = workload.items(profile.capture_requests, profile.held_out)
    client = run.client_for(workload)
    answers: list[Answer] = []
    started, candidates_before = time.time(), len(seen.candidates)

    say(f"[drift] the app now asks {DRIFT_CATEGORY} questions with their own tools; {adapter_id} serves")
    await run.timed(
        "drift_rollback",
        run.traffic_until(
            client, fresh, "drift", lambda: seen.final_state(adapter_id) == ROLLED_BACK, answers
        ),
    )
    say(f"[drift] {adapter_id} rolled back; live answers until the workflow is nominated again")
    await run.timed(
        "drift_retry",
        run.traffic_until(
            client, fresh, "drift-retry", lambda: len(seen.candidates) > candidates_before, answers
        ),
    )
    candidate_id = seen.candidates[-1][1].candidate_id
    say(f"[drift] nominated again ({candidate_id}); waiting for the trainer's next version")
    await run.wait("drift_train", lambda: seen.outcome(candidate_id) is not None)
    v2 = seen.outcome(candidate_id)
    assert v2 is not None
    if v2.status == events_pb2.ADAPTER_STATUS_READY and v2.gate_passed:
        say(f"[drift] {v2.adapter_id} passed its gate and rolls out; the new traffic keeps coming")
        await run.timed(
            "drift_rollout",
            run.traffic_until(client, later, "drift-rollout", lambda: seen.finished(v2.adapter_id), answers),
        )
    return drift_report(seen, started, adapter_id, v2, answers, workload.correct)


def drift_report(
    seen: Seen,
    started: float,
    adapter_id: str,
    v2: events_pb2.AdapterEvent | None,
    answers: Sequence[Answer],
    correct: Callable[[Any, str], bool],
) -> dict[str, Any]:
    """What happened after the traffic changed, from the services' events and BFCL's checker."""

    def since(t: float | None) -> float | None:
        return round(t - started, 1) if t is not None else None

    def accuracy(served: list[Answer]) -> dict[str, Any]:
        right = sum(correct(a.item, a.text) for a in served)
        return {
            "requests": len(served),
            "right": right,
            "accuracy": round(right / len(served), 4) if served else None,
        }

    by_v1 = [a for a in answers if a.adapter_id == adapter_id]
    v2_id = v2.adapter_id if v2 is not None else ""
    rolled_back_at = seen.state_reached_at(adapter_id, ROLLED_BACK)
    renominated = [t for t, c in seen.candidates if t >= started]
    return {
        "category": DRIFT_CATEGORY,
        "drifted_requests": len(answers),
        "signals": [
            {
                "at_s": since(t),
                "adapter_id": s.adapter_id,
                "signal": s.signal,
                "severity": severity_name(s.severity),
            }
            for t, s in seen.drift
            if t >= started
        ],
        "actions": [
            {
                "at_s": since(t),
                "adapter_id": e.adapter_id,
                "from": e.from_state,
                "to": e.to_state,
                "reason": e.reason,
            }
            for t, e in seen.rollouts
            if t >= started
        ],
        "rollback_seconds": since(rolled_back_at),
        "degraded_answers_served": sum(not correct(a.item, a.text) for a in by_v1),
        "answers_by_promoted_adapter": len(by_v1),
        "renominated_seconds": since(renominated[0]) if renominated else None,
        "v2": {
            "adapter_id": v2_id,
            "status": events_pb2.AdapterStatus.Name(v2.status) if v2 is not None else "",
            "gate_passed": bool(v2 and v2.gate_passed),
            "offline_score": round(v2.offline_score, 4) if v2 is not None else None,
            "warm_start": v2.metrics.get("warm_start", 0.0) if v2 is not None else 0.0,
            "final_state": seen.final_state(v2_id) if v2_id else "",
            "promoted_seconds": since(seen.state_reached_at(v2_id, PROMOTED)) if v2_id else None,
        },
        "gold_accuracy": {
            "promoted_adapter": accuracy(by_v1),
            "live": accuracy([a for a in answers if not a.adapter_id and not a.error]),
            "v2": accuracy([a for a in answers if v2_id and a.adapter_id == v2_id]),
        },
    }
