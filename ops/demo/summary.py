"""The demo's report bodies: the whole one at the end, and what a run that stopped early saw."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cumulus.v1 import events_pb2
from ops.demo import report
from ops.demo.client import WorkloadClient
from ops.demo.observer import Observer, Seen
from ops.demo.params import parameter_counts

if TYPE_CHECKING:
    from ops.demo.runner import DemoRun


def partial(run: DemoRun, observer: Observer, error: str) -> dict[str, Any]:
    """The partial report of a demo that stopped at a stage: the stage, the error, the events."""
    seen = observer.seen
    stages = ("capture", "detect", "train", "held", "rollout", "broken")
    return {
        "error": error,
        "stopped_in": next((s for s in reversed(stages) if s in run.phases), "start"),
        "workload": run.workload.name,
        "workflow": run.workflow,
        "tenant": run.tenant,
        "candidates": [c.candidate_id for _, c in seen.candidates],
        "adapters": {
            a.adapter_id: {
                "status": events_pb2.AdapterStatus.Name(a.status),
                "offline_score": a.offline_score,
                "error": a.error,
            }
            for a in seen.adapters.values()
        },
        "rollout_steps": [
            {"adapter": e.adapter_id, "to": e.to_state, "weight": e.weight, "reason": e.reason}
            for _, e in seen.rollouts
        ],
        "phase_seconds": run.phases,
        "total_seconds": round(time.time() - run.t0, 1),
        "profile": run.profile.to_json(),
    }


def final(
    run: DemoRun,
    observer: Observer,
    client: WorkloadClient,
    good: str,
    bad: str,
    detected_at: float,
    held_reason: str,
) -> dict[str, Any]:
    seen, cfg, workload = observer.seen, run.config, run.workload
    params = parameter_counts(cfg, good)
    promoted_at = seen.state_reached_at(good, "promoted")
    graded, pass_rate = report.verdict_stats(seen, good)
    curves = run.learned.get("learning_curves", [])
    body: dict[str, Any] = {
        "workload": workload.name,
        "expected": workload.expected,
        "targets": {k: list(v) for k, v in workload.targets.items()},
        "workflow": run.workflow,
        "tenant": run.tenant,
        "adapter_id": good,
        "student": _student(seen, good),
        "learning_curve": [p for c in curves for p in c["points"]],
        "sufficiency": run.learned.get("sufficiency", []),
        "feedback_sent": client.feedback_sent,
        "feedback_failed": client.feedback_failed,
        "shadow_pairs_graded": graded,
        "gold_verdicts": sum(v.adapter_id == good for v in seen.gold_verdicts.values()),
        "judge_pass_rate": pass_rate,
        **report.audit_stats(seen, good),
        "drift_signals": report.drift_seen(seen, run.t0),
        **report.pair_stats(seen, good, run.items, params, workload.correct),
        "detection_to_promotion_seconds": round(promoted_at - detected_at, 1) if promoted_at else None,
        "rollout_final_state": seen.final_state(good),
        "rollout_steps": report.rollout_steps(seen, good, run.t0),
        "max_candidate_share": max(
            (e.weight for a in seen.adapters if a != bad for e in seen.rollout_states(a)), default=0.0
        ),
        "held_reason": held_reason,
        "parameters": params,
        "phase_seconds": run.phases,
        "total_seconds": round(time.time() - run.t0, 1),
        "profile": run.profile.to_json(),
    }
    if bad:
        body |= {
            "bad_adapter_id": bad,
            "bad_adapter_final_state": seen.final_state(bad),
            "bad_adapter_max_weight": max((e.weight for e in seen.rollout_states(bad)), default=0.0),
            "bad_adapter_steps": report.rollout_steps(seen, bad, run.t0),
        }
    body["targets_met"] = report.targets_met(body, workload.targets)
    return body


def _student(seen: Seen, adapter_id: str) -> str:
    """The base model the trainer chose for ``adapter_id`` (the ladder's pick)."""
    event = seen.adapters.get(adapter_id)
    return str(event.base_model) if event is not None else ""
