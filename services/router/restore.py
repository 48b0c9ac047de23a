"""How a restarted router resumes: the same rollouts, route tables and versions as before it died.

The route tables topic is compacted (the newest table per workflow), the rollouts and adapters
topics are kept whole. The newest rollout event of each (tenant, workflow) says its state; the
table in force supplies the targets it routes to. Where the two disagree (the router died
between publishing a table and its rollout event), the table the state means is republished.
"""

from __future__ import annotations

from cumulus.kafka import topics
from cumulus.logs import get_logger
from cumulus.rollout_states import PAUSED, PROMOTED, ROLLED_BACK
from cumulus.v1 import events_pb2
from services.router.core import Output, Router
from services.router.rollout import Rollout, Transition, WorkflowKey, candidate_target, incumbent_of

log = get_logger("router")


def restore(
    router: Router,
    tables: list[events_pb2.RouteTable],
    events: list[events_pb2.RolloutEvent],
    adapters: list[events_pb2.AdapterEvent] | None = None,
) -> list[Output]:
    """Rebuild from the newest table per (tenant, workflow) and the rollout events, oldest first;
    the version book from the adapter events and those rollout events.

    Returns tables to republish where the one in force does not match the rollout's state
    (the router died between publishing a table and its rollout event).
    """
    for table in tables:
        router.tables[WorkflowKey.of(table.meta)] = table
    for adapter in adapters or []:
        router.versions.note_adapter(adapter)
    for event in events:
        router.versions.note_transition(
            WorkflowKey.of(event.meta),
            event.adapter_id,
            event.to_state,
            event.reason,
            event.meta.occurred_at.ToNanoseconds(),
            event.parent,
        )
    latest: dict[WorkflowKey, events_pb2.RolloutEvent] = {}
    paused_from: dict[WorkflowKey, str] = {}
    for event in events:
        key = WorkflowKey.of(event.meta)
        latest[key] = event
        if event.to_state == PAUSED:
            paused_from[key] = event.from_state
    repairs: list[Output] = []
    for key, event in latest.items():
        in_force = router.tables.get(key)
        rollout = _rebuild(router, event, in_force, paused_from.get(key, ""))
        if rollout is None:
            continue
        router.rollouts[key] = rollout
        expected = rollout.route_table(0, router.config.shadow_rate, router.audit)
        if in_force is None or _shape(in_force) != _shape(expected):
            log.warning(
                "rollout.route_repaired",
                tenant=key.tenant,
                workflow=key.workflow,
                adapter=rollout.adapter_id,
            )
            repairs.append(Output(topics.ROUTES, router.next_table(rollout)))
        log.info(
            "rollout.restored",
            tenant=key.tenant,
            workflow=key.workflow,
            adapter=rollout.adapter_id,
            state=rollout.state,
            step=rollout.step,
            weight=rollout.weight,
        )
    return repairs


def _rebuild(
    router: Router, event: events_pb2.RolloutEvent, table: events_pb2.RouteTable | None, paused_from: str
) -> Rollout | None:
    workflow = event.meta.workflow
    candidate = None
    if table is not None:
        targets = [w.target for w in table.canary] + [table.shadow]
        candidate = next((t for t in targets if t.adapter_id == event.adapter_id), None)
    if candidate is None and event.to_state != ROLLED_BACK:
        log.error(
            "rollout.unrestorable",
            tenant=event.meta.tenant,
            workflow=workflow,
            adapter=event.adapter_id,
            reason="no table",
        )
        return None
    rollout = Rollout(
        tenant=event.meta.tenant,
        workflow=workflow,
        adapter_id=event.adapter_id,
        candidate=candidate or candidate_target(events_pb2.AdapterEvent(adapter_id=event.adapter_id), ""),
        incumbent=table.live if table is not None else incumbent_of(None),
        steps=router.config.canary_steps,
        state=event.to_state,
        step=event.step,
        paused_from=paused_from,
        step_started_ns=event.meta.occurred_at.ToNanoseconds(),
        expects_gold=event.evidence.get("expects_gold", 0.0) == 1.0,
        state_since_ns=event.meta.occurred_at.ToNanoseconds(),
        # A drift notice's raised audit share rides on its (promoted -> promoted) event.
        raised_audit=event.evidence.get("audit_share", 0.0) if event.to_state == PROMOTED else 0.0,
    )
    # ``expects_gold`` rides along in every event only to be restored here; it is not evidence.
    evidence = {key: value for key, value in event.evidence.items() if key != "expects_gold"}
    rollout.last = Transition(
        event.from_state, event.to_state, event.step, event.weight, event.reason, evidence
    )
    return rollout


def _shape(table: events_pb2.RouteTable) -> tuple[object, ...]:
    """What a table routes, without its version and metadata."""
    return (
        table.rollout_state,
        table.live.SerializeToString(deterministic=True),
        tuple((w.target.SerializeToString(deterministic=True), round(w.weight, 9)) for w in table.canary),
        table.shadow.SerializeToString(deterministic=True),
        round(table.shadow_rate, 9),
        table.anchor.SerializeToString(deterministic=True),
        round(table.anchor_rate, 9),
    )
