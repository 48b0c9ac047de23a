"""The rollout of one adapter on one workflow: its state machine and the route table each state means.

States and steps (``step`` is what a RolloutEvent carries):

    shadow (step 0, weight 0) -> canary step 1..K (weights from config) -> promoted (step K+1, 100%)
    rolled_back and paused are reachable from any other state.

Gates move a rollout forward one step at a time (or roll it back); operator commands may pause,
resume (to the state it was paused from, with fresh evidence), promote, or roll back. Rolling back
restores the route in force before the rollout: the ``incumbent`` target serving all traffic
(an earlier adapter version becomes the workflow's promoted rollout again: Router.roll_back).
Every transition yields a ``Transition`` (the router publishes it as a RolloutEvent) and a new
RouteTable. Nothing here touches Kafka, so it is tested directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

from cumulus.rollout_states import CANARY, PAUSED, PROMOTED, ROLLED_BACK, SHADOW
from cumulus.v1 import common_pb2, events_pb2
from services.router.gates import StepEvidence


def live_target() -> common_pb2.RouteTarget:
    """The live model: the first incumbent, and what a promoted adapter's audit sample also goes to."""
    return common_pb2.RouteTarget(model="live")


class Audit(NamedTuple):
    """How the live model keeps being asked beside adapters (router.audit_share,
    router.audit_min_per_hour: a promoted adapter's audit; router.anchor_share: a version rolled
    out over another is graded against live too)."""

    share: float
    min_per_hour: int
    anchor_share: float = 0.0


NO_AUDIT = Audit(0.0, 0)


class WorkflowKey(NamedTuple):
    """What the router keys rollouts and route tables by (a workflow's name is only unique per tenant).

    Two tenants may both name a workflow "tickets": each gets its own rollout and route table.
    """

    tenant: str
    workflow: str

    @classmethod
    def of(cls, meta: common_pb2.EventMeta) -> WorkflowKey:
        return cls(meta.tenant, meta.workflow)


@dataclass(frozen=True)
class Transition:
    from_state: str
    to_state: str
    step: int
    weight: float
    reason: str
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass
class Rollout:
    """One adapter's rollout on one workflow (see the module docstring)."""

    tenant: str
    workflow: str
    adapter_id: str
    candidate: common_pb2.RouteTarget
    incumbent: common_pb2.RouteTarget
    """What served all traffic before the rollout; a rollback routes everything back to it."""
    steps: tuple[float, ...]
    state: str = SHADOW
    step: int = 0
    paused_from: str = ""
    evidence: StepEvidence = field(default_factory=StepEvidence)
    step_started_ns: int = field(default_factory=time.time_ns)
    """Verdicts about earlier moments do not count toward the step (a replayed topic, a late batch)."""
    last: Transition | None = None
    """The latest transition: what `cumulus rollout list` explains."""
    expects_gold: bool = False
    """The adapter's offline gate was decided on gold: its steps wait for gold, not for agreement."""
    last_verdict_ns: int = field(default_factory=time.time_ns)
    """When a verdict last counted (or the step began, or the router restored it): starvation's clock."""
    held: str = ""
    """Why the step is held for want of verdicts ('' while verdicts arrive); cleared by the next one."""
    audits: int = 0
    """Audit windows a promoted adapter has passed (or ended inconclusive) since its promotion."""
    last_audit: Transition | None = None
    raised_audit: float = 0.0
    """A drift notice's audit share for this promoted adapter (0: the router's ``audit_share``)."""
    state_since_ns: int = field(default_factory=time.time_ns)
    """When the rollout entered its state: drift signals measured before that are not about it."""
    drift: dict[str, dict[str, object]] = field(default_factory=dict)
    """Signal name -> the latest drift signal acted on (severity, action, detail) for the listing."""

    @property
    def key(self) -> WorkflowKey:
        return WorkflowKey(self.tenant, self.workflow)

    def log_fields(self) -> dict[str, object]:
        """What every log line about this rollout names."""
        return {
            "tenant": self.tenant,
            "workflow": self.workflow,
            "adapter": self.adapter_id,
            "state": self.state,
        }

    @property
    def rollout_id(self) -> str:
        """Deterministic, so a redelivered adapter event maps onto the same rollout."""
        return f"{self.workflow}/{self.adapter_id}"

    @property
    def promoted_step(self) -> int:
        return len(self.steps) + 1

    @property
    def weight(self) -> float:
        """Candidate share of traffic at the current step (a rolled-back rollout serves none)."""
        if self.state == ROLLED_BACK or self.step == 0:
            return 0.0
        return 1.0 if self.step >= self.promoted_step else self.steps[self.step - 1]

    def _move(self, to_state: str, step: int, reason: str, evidence: dict[str, float]) -> Transition:
        from_state = self.state
        self.state, self.step = to_state, step
        self.evidence = StepEvidence()  # every step is tested on its own verdicts
        self.step_started_ns = self.last_verdict_ns = self.state_since_ns = time.time_ns()
        self.held = ""
        self.last = Transition(from_state, to_state, step, self.weight, reason, evidence)
        return self.last

    def advance(self, reason: str, evidence: dict[str, float]) -> Transition:
        """One step forward: shadow -> first canary step -> ... -> promoted."""
        step = self.step + 1
        to_state = PROMOTED if step >= self.promoted_step else CANARY
        return self._move(to_state, step, reason, evidence)

    def rollback(self, reason: str, evidence: dict[str, float] | None = None) -> Transition | None:
        if self.state == ROLLED_BACK:
            return None
        return self._move(ROLLED_BACK, self.step, reason, evidence or {})

    def hold(self, reason: str, now_ns: int) -> None:
        """Hold the step for want of verdicts: its evidence so far is dropped, and only verdicts
        about moments after ``now_ns`` count, so it never advances on evidence from before the gap."""
        self.held = reason
        self.evidence = StepEvidence()
        self.step_started_ns = now_ns

    def heard(self, now_ns: int) -> bool:
        """A verdict counted at ``now_ns``; True when it ends a hold."""
        self.last_verdict_ns = now_ns
        was_held, self.held = bool(self.held), ""
        return was_held

    def next_audit_window(self, reason: str, evidence: dict[str, float]) -> None:
        """A promoted adapter's audit window concluded without a regression: watch afresh.

        Nothing changes for traffic, so nothing is published; ``audits`` counts the windows and
        ``last_audit`` keeps the latest one's numbers for `cumulus rollout list`."""
        self.audits += 1
        self.last_audit = Transition(self.state, self.state, self.step, self.weight, reason, evidence)
        self.evidence = StepEvidence()
        self.step_started_ns = self.last_verdict_ns = time.time_ns()

    def pause(self, reason: str) -> Transition | None:
        if self.state in (PAUSED, ROLLED_BACK):
            return None
        self.paused_from = self.state
        return self._move(PAUSED, self.step, reason, {})

    def step_back(self, reason: str, evidence: dict[str, float]) -> Transition | None:
        """Pause a promoted adapter at the last canary step: the incumbent takes back the rest of
        the traffic until an operator resumes it (gated again from that step) or rolls it back."""
        if self.state != PROMOTED:
            return None
        self.paused_from = CANARY
        return self._move(PAUSED, len(self.steps), reason, evidence)

    def raise_audit(self, share: float, reason: str, evidence: dict[str, float]) -> Transition | None:
        """Audit a promoted adapter at ``share`` from now on; None if it already is (or is not promoted).

        Traffic's split is unchanged, so its evidence so far still counts; the transition (promoted
        to promoted) records why the route table changed, and restores the share after a restart."""
        if self.state != PROMOTED or self.raised_audit >= share:
            return None
        self.raised_audit = share
        self.last = Transition(
            PROMOTED, PROMOTED, self.step, self.weight, reason, {**evidence, "audit_share": share}
        )
        return self.last

    def resume(self, reason: str) -> Transition | None:
        if self.state != PAUSED:
            return None
        return self._move(self.paused_from or SHADOW, self.step, reason, {})

    def promote(self, reason: str) -> Transition | None:
        if self.state in (PROMOTED, ROLLED_BACK):
            return None
        return self._move(PROMOTED, self.promoted_step, reason, {})

    def reinstate(self, reason: str, evidence: dict[str, float] | None = None) -> Transition:
        """Serve this (earlier) version to all traffic at once: an operator's ``rollback --to``, or
        its successor rolled back (``evidence``: what that rollback was decided on)."""
        return self._move(PROMOTED, self.promoted_step, reason, evidence or {})

    def route_table(self, version: int, shadow_rate: float, audit: Audit = NO_AUDIT) -> events_pb2.RouteTable:
        """The RouteTable this rollout's state means (``meta`` is stamped by the caller).

        The live model is asked beside adapters (the table's ``anchor``): promoted, a share of
        requests (and a floor an hour) is the audit; rolled out over an earlier version, a share is
        copied to live so that both versions are graded against it as well as each other."""
        table = events_pb2.RouteTable(version=version, rollout_state=self.state)
        table.live.CopyFrom(self.incumbent)
        if self.state == ROLLED_BACK:
            return table
        if self.weight > 0:
            table.canary.add(target=self.candidate, weight=self.weight)
        if self.weight < 1.0:
            table.shadow.CopyFrom(self.candidate)
            table.shadow_rate = shadow_rate
            if self.incumbent.adapter_id and audit.anchor_share:
                table.anchor.CopyFrom(live_target())
                table.anchor_rate = audit.anchor_share
        elif self.state == PROMOTED and (audit.share or audit.min_per_hour or self.raised_audit):
            table.anchor.CopyFrom(live_target())
            table.anchor_rate = max(audit.share, self.raised_audit)
            table.audit_min_per_hour = audit.min_per_hour
        return table

    @property
    def reference_adapter(self) -> str:
        """The adapter whose answers this rollout's agreement is measured against ('' : the live
        model): the incumbent version while rolled out over one, live once promoted (the audit)."""
        return "" if self.state == PROMOTED else self.incumbent.adapter_id


def candidate_target(event: events_pb2.AdapterEvent, model: str) -> common_pb2.RouteTarget:
    """The route target of a READY adapter (its TensorRT-LLM tensors sit under ``artifact_uri``)."""
    return common_pb2.RouteTarget(
        model=model,
        adapter_id=event.adapter_id,
        adapter_version=event.version,
        lora_task_id=event.lora_task_id,
        adapter_uri=event.artifact_uri,
        adapter_sha256=event.manifest_sha256,
    )


def incumbent_of(table: events_pb2.RouteTable | None) -> common_pb2.RouteTarget:
    """What serves all of a workflow's traffic under ``table``: a fully promoted adapter, else live."""
    if table is None:
        return live_target()
    for weighted in table.canary:
        if weighted.weight >= 1.0 and weighted.target.model:
            return weighted.target
    return table.live if table.live.model else live_target()
