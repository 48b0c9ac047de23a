"""What the router does with a drift signal (cumulus.drift.v1) about a promoted adapter.

The collector measures a promoted workflow's traffic against its adapter's training data and
announces a signal when its severity rises (services/collector/drift.py). By severity, as
``router.drift`` configures it (defaults in brackets):

- notice [``raise_audit``]: the workflow's audit share goes up to ``raised_audit_share``, so the
  always-valid test on the adapter gets evidence sooner;
- warning [``pause``]: the adapter is paused at the last canary step, the incumbent takes back
  the rest of the traffic, until an operator resumes (gated again) or rolls it back;
- critical [``rollback``]: the workflow rolls back to what served before the adapter (the
  previous version, or live); the collector re-nominates it once fresh traffic has grown.
``record`` only notes the signal. Every action is a RolloutEvent whose reason names the signal,
so `cumulus rollout list`, the dashboard and the history say what was done and why.

A signal counts only for the adapter it names, while that adapter is promoted (or paused by a
drift warning, where only a rollback is left to do: drift that keeps growing must not wait for an
operator), and only if it was measured after the adapter entered that state: a signal about an
earlier promotion (a replayed batch, a version since rolled back) changes nothing.
"""

from __future__ import annotations

from cumulus.config.drift import severity_name
from cumulus.logs import get_logger
from cumulus.rollout_states import PAUSED, PROMOTED
from cumulus.v1 import events_pb2
from services.router.core import Output, Router
from services.router.rollout import Rollout, Transition, WorkflowKey

log = get_logger("router")


def stepped_back(rollout: Rollout) -> bool:
    """Paused straight from promoted (a drift warning's step back, or an operator's pause): it
    still serves its share."""
    return rollout.state == PAUSED and rollout.last is not None and rollout.last.from_state == PROMOTED


def on_drift(router: Router, signal: events_pb2.DriftSignal) -> list[Output]:
    """Act on one drift signal (see the module docstring); the outputs to publish."""
    key = WorkflowKey.of(signal.meta)
    rollout = router.rollouts.get(key)
    severity = int(signal.severity)
    name = severity_name(severity)
    if (
        rollout is None
        or rollout.adapter_id != signal.adapter_id
        or not (rollout.state == PROMOTED or stepped_back(rollout))
        or name == "none"
        or signal.meta.occurred_at.ToNanoseconds() < rollout.state_since_ns
    ):
        log.info(
            "drift.ignored",
            tenant=key.tenant,
            workflow=key.workflow,
            adapter=signal.adapter_id,
            signal=signal.signal,
            serving=rollout.adapter_id if rollout else "",
            state=rollout.state if rollout else "",
        )
        return []
    action = router.config.drift.action(severity)
    reason = f"drift {name}: {signal.signal}: {signal.detail}"
    evidence = {f"drift_{k}": float(v) for k, v in signal.evidence.items()} | {
        "drift_severity": float(severity)
    }
    move: Transition | None = None
    if action == "raise_audit":
        share = router.config.drift.raised_audit_share
        move = rollout.raise_audit(share, f"{reason}; audit share raised to {share:.0%}", evidence)
    elif action == "pause":
        move = rollout.step_back(f"{reason}; paused at the last canary step", evidence)
    rollout.drift[signal.signal] = {"severity": name, "action": action, "detail": signal.detail}
    log.warning("drift.acted", **rollout.log_fields(), signal=signal.signal, severity=name, action=action)
    if action == "rollback":
        return router.roll_back(rollout, reason, evidence)
    return router.outputs_of(rollout, move) if move is not None else []
