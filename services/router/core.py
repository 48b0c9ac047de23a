"""The router's decisions, free of Kafka: events in, rollout events and route tables out.

``Router`` holds the latest rollout of each workflow and the version of each workflow's route
table, both keyed by (tenant, workflow): tenants may name their workflows alike, and one tenant's
adapters, verdicts and commands never touch another's rollout. Handlers return ``Output``s (a
topic and an event); the worker publishes them, waits for Kafka to acknowledge them, then commits
the inputs. A restarted router rebuilds the same state from the topics (services/router/restore.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from cumulus.config import RouterConfig
from cumulus.errors import Conflict
from cumulus.kafka import codec, topics
from cumulus.kafka.topics import TopicSpec
from cumulus.logs import get_logger
from cumulus.rollout_states import ACTIVE, GRADED, PROMOTED, ROLLED_BACK, SHADOW
from cumulus.v1 import common_pb2, events_pb2
from services.router import gates
from services.router.rollout import (
    Audit,
    Rollout,
    Transition,
    WorkflowKey,
    candidate_target,
    incumbent_of,
)
from services.router.versions import VersionBook

log = get_logger("router")


def on_small(base_model: str) -> str:
    """Every adapter on Triton model ``small``, whatever its base (a router without a ladder)."""
    return "small"


PRODUCER = "router"


def gated_on_gold(adapter: events_pb2.AdapterEvent) -> bool:
    """The adapter's offline gate decided on gold: its steps (and audits) wait for gold verdicts."""
    return adapter.metrics.get("gate_test", 0.0) == 1.0


@dataclass(frozen=True)
class Output:
    topic: TopicSpec
    event: Message


def gate_policy(config: RouterConfig) -> gates.GatePolicy:
    return gates.GatePolicy(
        margin=config.margin,
        alpha=config.alpha,
        min_samples=config.min_samples_per_step,
        max_samples=config.max_samples_per_step,
        max_error_rate=config.max_error_rate,
        max_p95_latency_ratio=config.max_p95_latency_ratio,
        guardrail_min_samples=config.guardrail_min_samples,
        min_gold_samples=config.min_gold_samples_per_step,
        gold_margin=config.gold_margin,
    )


class Router:
    """Rollouts by (tenant, workflow) and the route tables they publish (see the module docstring)."""

    def __init__(self, config: RouterConfig, serving_model: Callable[[str], str] = on_small) -> None:
        self.config = config
        self.serving_model = serving_model
        """The Triton model serving adapters of a base model (CumulusConfig.triton_model_for)."""
        self.policy = gate_policy(config)
        self.audit = Audit(config.audit_share, config.audit_min_per_hour, config.anchor_share)
        self.rollouts: dict[WorkflowKey, Rollout] = {}
        self.tables: dict[WorkflowKey, events_pb2.RouteTable] = {}
        self.versions = VersionBook()

    # --- inputs -------------------------------------------------------------------------------
    def on_adapter(self, event: events_pb2.AdapterEvent) -> list[Output]:
        """A READY adapter that passed the offline gate starts a rollout in shadow."""
        self.versions.note_adapter(event)
        if event.status != events_pb2.ADAPTER_STATUS_READY or not event.gate_passed:
            return []
        key = WorkflowKey.of(event.meta)
        current = self.rollouts.get(key)
        if current is not None and current.adapter_id == event.adapter_id:
            return []  # redelivered, or already rolled out: one rollout per adapter
        if current is not None and current.state in ACTIVE:
            log.warning(
                "rollout.busy",
                tenant=key.tenant,
                workflow=key.workflow,
                adapter=event.adapter_id,
                active=current.adapter_id,
            )
            return []
        table = self.tables.get(key)
        rollout = Rollout(
            tenant=key.tenant,
            workflow=key.workflow,
            adapter_id=event.adapter_id,
            candidate=candidate_target(event, self.serving_model(event.base_model)),
            incumbent=incumbent_of(table),
            steps=self.config.canary_steps,
            expects_gold=gated_on_gold(event),
        )
        self.rollouts[key] = rollout
        offline = {"offline_score": event.offline_score}
        offline.update(
            {
                k: v
                for k, v in event.metrics.items()
                if k.startswith(("gold_", "live_gold", "candidate_gold", "gate_"))
            }
        )
        started = Transition("", SHADOW, 0, 0.0, "adapter passed the offline gate", offline)
        rollout.last = started
        return self.outputs_of(rollout, started)

    def on_verdict(self, verdict: events_pb2.Verdict) -> None:
        """Count a verdict toward its rollout's current step.

        The step is decided on the candidate's verdicts against its reference (the incumbent
        version, or live: ``Rollout.reference_adapter``). Rolled out over an earlier version, the
        verdicts of both versions against the live model (the table's anchor) are counted apart,
        for the live check of services/router/gates.py. Ignored: other adapters' verdicts,
        verdicts while paused or finished, and verdicts that occurred before the step began (a new
        consumer group replaying the topic, or verdicts that arrive in the same batch as the
        command that resumed the step, must not count twice).
        """
        rollout = self.rollouts.get(WorkflowKey.of(verdict.meta))
        if (
            rollout is None
            or rollout.state not in GRADED
            or verdict.meta.occurred_at.ToNanoseconds() < rollout.step_started_ns
        ):
            return
        reference = rollout.reference_adapter
        against_live = not verdict.reference_adapter_id and verdict.reference != "gold"
        if reference and against_live and verdict.adapter_id in (rollout.adapter_id, reference):
            rollout.evidence.live_check.add(verdict.adapter_id == rollout.adapter_id, verdict.passed)
            return
        if rollout.adapter_id != verdict.adapter_id or verdict.reference_adapter_id != reference:
            return
        if rollout.heard(time.time_ns()):
            log.info("rollout.verdicts_returned", **rollout.log_fields())
        if verdict.reference == "gold":
            rollout.evidence.add_gold(verdict.verdict_id, verdict.passed, verdict.live_passed)
            return
        rollout.evidence.add(
            verdict.passed, verdict.candidate_error, verdict.candidate_latency_ms, verdict.live_latency_ms
        )

    def evaluate(self) -> list[Output]:
        """Run every gating rollout's gate once; publish what moved.

        A promoted adapter is audited by the same gate: a regression (inferiority, a guardrail)
        rolls the workflow back to what served before it; a window that shows it still good
        enough, or none after ``max_samples``, just starts the next window."""
        outputs: list[Output] = []
        for rollout in self.rollouts.values():
            if rollout.state not in GRADED or rollout.evidence.n + rollout.evidence.gold.n == 0:
                continue
            decision = gates.evaluate(rollout.evidence, self.policy, expects_gold=rollout.expects_gold)
            if rollout.state == PROMOTED and decision.action in ("advance", "inconclusive"):
                rollout.next_audit_window(decision.reason, decision.evidence)
            elif rollout.state == PROMOTED and decision.action == "rollback":
                reason = f"audit after promotion: {decision.reason}"
                outputs += self.roll_back(rollout, reason, decision.evidence)
            elif decision.action == "advance":
                outputs += self.outputs_of(rollout, rollout.advance(decision.reason, decision.evidence))
            elif decision.action in ("rollback", "inconclusive"):
                outputs += self.roll_back(rollout, decision.reason, decision.evidence)
        return outputs

    def roll_back(
        self, rollout: Rollout, reason: str, evidence: dict[str, float] | None = None
    ) -> list[Output]:
        """Roll ``rollout`` back to what served before it, whoever decided so (a gate, the audit, the
        live check, starvation, drift, an operator); [] if it already was.

        Over an earlier adapter version, that version is reinstated as the workflow's promoted
        rollout (its audit resumes, drift about it is acted on, a regression of it falls back to
        live), rather than left serving from the table's ``live`` slot where nothing watches it."""
        move = rollout.rollback(reason, evidence)
        if move is None:
            return []
        previous = rollout.incumbent
        if not previous.adapter_id:
            return self.outputs_of(rollout, move)
        version = self.versions.find(rollout.key, previous.adapter_id)
        named = f"v{version.number} ({previous.adapter_id})" if version else previous.adapter_id
        stepped_down = Output(topics.ROLLOUTS, self._event(rollout, move))  # its table is replaced at once
        again = f"{rollout.adapter_id} rolled back ({reason}): {named} serves again"
        gold = gated_on_gold(version.event) if version else False
        return [stepped_down, *self._reinstate(rollout.key, previous, PROMOTED, again, gold, move.evidence)]

    def _reinstate(
        self,
        key: WorkflowKey,
        target: common_pb2.RouteTarget,
        state: str,
        reason: str,
        expects_gold: bool,
        evidence: dict[str, float] | None = None,
    ) -> list[Output]:
        """Serve ``target`` (an earlier version, in ``state`` until now) to all traffic as the
        workflow's promoted rollout; should it regress, the workflow falls back to live."""
        reinstated = Rollout(
            tenant=key.tenant,
            workflow=key.workflow,
            adapter_id=target.adapter_id,
            candidate=target,
            incumbent=incumbent_of(None),
            steps=self.config.canary_steps,
            state=state,
            expects_gold=expects_gold,
        )
        self.rollouts[key] = reinstated
        return self.outputs_of(reinstated, reinstated.reinstate(reason, evidence))

    def on_command(self, command: events_pb2.RolloutCommand) -> list[Output]:
        rollout = self.rollouts.get(WorkflowKey.of(command.meta))
        who = command.operator or "operator"
        if rollout is None or (command.adapter_id and command.adapter_id != rollout.adapter_id):
            log.warning(
                "command.no_rollout",
                tenant=command.meta.tenant,
                workflow=command.meta.workflow,
                adapter=command.adapter_id,
            )
            return []
        reason = f"{who}: {command.reason}" if command.reason else who
        actions = {
            events_pb2.ROLLOUT_ACTION_PAUSE: rollout.pause,
            events_pb2.ROLLOUT_ACTION_RESUME: rollout.resume,
            events_pb2.ROLLOUT_ACTION_PROMOTE: rollout.promote,
        }
        if command.action == events_pb2.ROLLOUT_ACTION_ROLLBACK and command.to_adapter_id:
            return self._rollback_to(rollout, command.to_adapter_id, reason)
        if command.action == events_pb2.ROLLOUT_ACTION_ROLLBACK:
            return self.roll_back(rollout, reason)
        act = actions.get(command.action)
        move = act(reason) if act else None
        if move is None:
            log.info(
                "command.no_op",
                tenant=rollout.tenant,
                workflow=rollout.workflow,
                state=rollout.state,
                action=command.action,
            )
            return []
        return self.outputs_of(rollout, move)

    def _rollback_to(self, current: Rollout, ref: str, reason: str) -> list[Output]:
        """Serve an earlier ready version of the workflow again, at once (``rollback --to``).

        Raises NotFound or InvalidArgument naming the version, or Conflict while another adapter's
        rollout holds the workflow (it says how to end that one first)."""
        key = current.key
        version = self.versions.resolve(key, ref)
        if current.adapter_id == version.adapter_id and current.state == PROMOTED:
            return []  # already served
        if current.state in ACTIVE and current.adapter_id != version.adapter_id:
            raise Conflict(
                f"{key.tenant}/{key.workflow} is held by the {current.state} rollout of {current.adapter_id}",
                fix=f"end it first: `cumulus rollout rollback {key.workflow} --tenant {key.tenant}`",
            )
        reason = f"{reason}: rollback to v{version.number} ({version.adapter_id})"
        outputs: list[Output] = []
        stepped_down = current.rollback(reason) if current.adapter_id != version.adapter_id else None
        if stepped_down is not None:  # its event only: the next table replaces its route at once
            outputs.append(Output(topics.ROLLOUTS, self._event(current, stepped_down)))
        target = candidate_target(version.event, self.serving_model(version.event.base_model))
        state = current.state if current.adapter_id == version.adapter_id else ROLLED_BACK
        gold = gated_on_gold(version.event)
        return outputs + self._reinstate(key, target, state, reason, gold)

    # --- outputs ------------------------------------------------------------------------------
    def outputs_of(self, rollout: Rollout, move: Transition) -> list[Output]:
        """The route table then the rollout event of ``move`` (restore trusts the event's state)."""
        table = self.next_table(rollout)
        return [Output(topics.ROUTES, table), Output(topics.ROLLOUTS, self._event(rollout, move, table))]

    def _event(
        self, rollout: Rollout, move: Transition, table: events_pb2.RouteTable | None = None
    ) -> events_pb2.RolloutEvent:
        parent = rollout.incumbent.adapter_id or rollout.incumbent.model
        self.versions.note_transition(
            rollout.key, rollout.adapter_id, move.to_state, move.reason, time.time_ns(), parent
        )
        event = events_pb2.RolloutEvent(
            meta=codec.new_meta(tenant=rollout.tenant, workflow=rollout.workflow, producer=PRODUCER),
            rollout_id=rollout.rollout_id,
            adapter_id=rollout.adapter_id,
            from_state=move.from_state,
            to_state=move.to_state,
            weight=move.weight,
            reason=move.reason,
            # Every event carries it, so that a restarted router restores it from the latest one.
            evidence={**move.evidence, "expects_gold": float(rollout.expects_gold)},
            step=move.step,
            parent=parent,
        )
        log.info(
            "rollout.transition",
            tenant=rollout.tenant,
            workflow=rollout.workflow,
            adapter=rollout.adapter_id,
            from_state=move.from_state,
            to_state=move.to_state,
            step=move.step,
            weight=move.weight,
            reason=move.reason,
            table_version=table.version if table is not None else None,
        )
        return event

    def next_table(self, rollout: Rollout) -> events_pb2.RouteTable:
        """The table of ``rollout``'s state, one version above the workflow's current table."""
        previous = self.tables.get(rollout.key)
        table = rollout.route_table(
            (previous.version if previous else 0) + 1, self.config.shadow_rate, self.audit
        )
        meta = codec.new_meta(tenant=rollout.tenant, workflow=rollout.workflow, producer=PRODUCER)
        table.meta.CopyFrom(meta)
        self.tables[rollout.key] = table
        return table
