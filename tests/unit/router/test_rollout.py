"""The rollout state machine, the route tables it publishes, and a restart rebuilding it."""

from __future__ import annotations

from typing import Any

import pytest

from cumulus.config import CumulusConfig, RouterConfig, StudentConfig, TrainerConfig
from cumulus.kafka import codec, topics
from cumulus.rollout_states import CANARY, PAUSED, PROMOTED, ROLLED_BACK, SHADOW
from cumulus.v1 import events_pb2
from services.router.core import Router
from services.router.restore import restore
from services.router.rollout import WorkflowKey

TENANT, WORKFLOW = "acme", "tickets"
KEY = WorkflowKey(TENANT, WORKFLOW)
CONFIG = RouterConfig(min_samples_per_step=50, shadow_rate=0.5)


def adapter_event(
    adapter_id: str = "ad-1", *, ready: bool = True, gate: bool = True, tenant: str = TENANT
) -> events_pb2.AdapterEvent:
    return events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant=tenant, workflow=WORKFLOW, producer="trainer"),
        adapter_id=adapter_id,
        status=events_pb2.ADAPTER_STATUS_READY if ready else events_pb2.ADAPTER_STATUS_REJECTED,
        gate_passed=gate,
        lora_task_id=42,
        version="v1",
        artifact_uri=f"file:///a/adapters/{WORKFLOW}/{adapter_id}",
        manifest_sha256="ab" * 32,
    )


def verdict(
    passed: bool = True,
    *,
    error: bool = False,
    adapter_id: str = "ad-1",
    tenant: str = TENANT,
    against: str = "",
) -> events_pb2.Verdict:
    """A verdict of ``adapter_id`` against the live model, or against adapter ``against``."""
    return events_pb2.Verdict(
        meta=codec.new_meta(tenant=tenant, workflow=WORKFLOW, producer="judge"),
        adapter_id=adapter_id,
        passed=passed and not error,
        candidate_error=error,
        live_latency_ms=100.0,
        candidate_latency_ms=0.0 if error else 40.0,
        reference="incumbent" if against else "live",
        reference_adapter_id=against,
    )


def command(action: int, tenant: str = TENANT) -> events_pb2.RolloutCommand:
    return events_pb2.RolloutCommand(
        meta=codec.new_meta(tenant=tenant, workflow=WORKFLOW, producer="cli"), action=action, operator="ops"
    )


def feed(router: Router, n: int, **kwargs: Any) -> list[object]:
    """``n`` verdicts, then one evaluation; by default against what the rollout steps on (its
    incumbent version, or live), as the judge grades the step's shadow pairs."""
    rollout = router.rollouts.get(WorkflowKey(kwargs.get("tenant", TENANT), WORKFLOW))
    kwargs.setdefault("against", rollout.reference_adapter if rollout is not None else "")
    for _ in range(n):
        router.on_verdict(verdict(**kwargs))
    return list(router.evaluate())


def started() -> Router:
    router = Router(CONFIG)
    router.on_adapter(adapter_event())
    return router


def test_a_ready_adapter_starts_in_shadow_with_the_configured_rate() -> None:
    router = Router(CONFIG)
    outputs = router.on_adapter(adapter_event())
    assert [o.topic for o in outputs] == [topics.ROUTES, topics.ROLLOUTS]
    table = outputs[0].event
    assert isinstance(table, events_pb2.RouteTable)
    assert (table.meta.tenant, table.meta.workflow, table.version) == (TENANT, WORKFLOW, 1)
    assert table.rollout_state == SHADOW and not table.canary and table.shadow_rate == 0.5
    assert (
        table.shadow.adapter_id == "ad-1"
        and table.shadow.lora_task_id == 42
        and table.shadow.model == "small"
        and table.shadow.adapter_sha256 == "ab" * 32  # the trainer's manifest digest, pinned
    )
    assert table.live.model == "live"
    assert router.on_adapter(adapter_event()) == []  # redelivery: no second rollout


@pytest.mark.parametrize("event", [adapter_event(ready=False), adapter_event(gate=False)])
def test_adapters_that_did_not_pass_the_gate_start_nothing(event: events_pb2.AdapterEvent) -> None:
    assert Router(CONFIG).on_adapter(event) == []


def test_a_good_candidate_walks_every_step_to_promotion_with_monotonic_versions() -> None:
    router = started()
    weights, versions = [], [router.tables[KEY].version]
    while router.rollouts[KEY].state != PROMOTED:
        outputs = feed(router, 50)
        assert outputs, "a perfect candidate advances after the minimum sample"
        weights.append(router.rollouts[KEY].weight)
        versions.append(router.tables[KEY].version)
    assert weights == [0.01, 0.05, 0.25, 0.5, 1.0]
    assert versions == sorted(set(versions))
    table = router.tables[KEY]
    assert [(w.target.adapter_id, w.weight) for w in table.canary] == [("ad-1", 1.0)]
    # ... and it stays watched: an audit share (and a floor an hour) also goes to the live model
    assert (table.anchor.model, table.anchor.adapter_id) == ("live", "") and not table.shadow.model
    assert (table.anchor_rate, table.audit_min_per_hour) == (0.05, 20)
    event = router.rollouts[KEY].last
    assert event is not None and event.evidence["n"] == 50 and event.evidence["lower_bound"] > 0.9


def test_a_broken_candidate_rolls_back_in_shadow_and_the_live_route_returns() -> None:
    router = started()
    feed(router, 20, error=True)
    rollout = router.rollouts[KEY]
    assert rollout.state == ROLLED_BACK and rollout.last is not None
    assert rollout.last.reason.startswith("guardrail")
    table = router.tables[KEY]
    assert not table.canary and not table.shadow.model and table.live.model == "live"


def _in_state(state: str) -> Router:
    router = started()
    if state in (CANARY, PROMOTED, PAUSED):
        feed(router, 50)
    if state == PROMOTED:
        router.on_command(command(events_pb2.ROLLOUT_ACTION_PROMOTE))
    if state == PAUSED:
        router.on_command(command(events_pb2.ROLLOUT_ACTION_PAUSE))
    if state == ROLLED_BACK:
        router.on_command(command(events_pb2.ROLLOUT_ACTION_ROLLBACK))
    assert router.rollouts[KEY].state == state
    return router


# (state, action) -> state after; None = refused / no-op (nothing published)
EXPECTED = {
    (SHADOW, events_pb2.ROLLOUT_ACTION_PAUSE): PAUSED,
    (CANARY, events_pb2.ROLLOUT_ACTION_PAUSE): PAUSED,
    (PROMOTED, events_pb2.ROLLOUT_ACTION_PAUSE): PAUSED,
    (PAUSED, events_pb2.ROLLOUT_ACTION_PAUSE): None,
    (ROLLED_BACK, events_pb2.ROLLOUT_ACTION_PAUSE): None,
    (SHADOW, events_pb2.ROLLOUT_ACTION_RESUME): None,
    (CANARY, events_pb2.ROLLOUT_ACTION_RESUME): None,
    (PROMOTED, events_pb2.ROLLOUT_ACTION_RESUME): None,
    (PAUSED, events_pb2.ROLLOUT_ACTION_RESUME): CANARY,
    (ROLLED_BACK, events_pb2.ROLLOUT_ACTION_RESUME): None,
    (SHADOW, events_pb2.ROLLOUT_ACTION_PROMOTE): PROMOTED,
    (CANARY, events_pb2.ROLLOUT_ACTION_PROMOTE): PROMOTED,
    (PROMOTED, events_pb2.ROLLOUT_ACTION_PROMOTE): None,
    (PAUSED, events_pb2.ROLLOUT_ACTION_PROMOTE): PROMOTED,
    (ROLLED_BACK, events_pb2.ROLLOUT_ACTION_PROMOTE): None,
    (SHADOW, events_pb2.ROLLOUT_ACTION_ROLLBACK): ROLLED_BACK,
    (CANARY, events_pb2.ROLLOUT_ACTION_ROLLBACK): ROLLED_BACK,
    (PROMOTED, events_pb2.ROLLOUT_ACTION_ROLLBACK): ROLLED_BACK,
    (PAUSED, events_pb2.ROLLOUT_ACTION_ROLLBACK): ROLLED_BACK,
    (ROLLED_BACK, events_pb2.ROLLOUT_ACTION_ROLLBACK): None,
}


@pytest.mark.parametrize(("state", "action"), sorted(EXPECTED))
def test_operator_commands_from_every_state(state: str, action: int) -> None:
    router = _in_state(state)
    before = router.rollouts[KEY].state
    outputs = router.on_command(command(action))
    expected = EXPECTED[(state, action)]
    if expected is None:
        assert outputs == [] and router.rollouts[KEY].state == before
        return
    assert router.rollouts[KEY].state == expected
    event = outputs[1].event
    assert isinstance(event, events_pb2.RolloutEvent)
    assert (event.from_state, event.to_state) == (state, expected)
    table = router.tables[KEY]
    if expected == ROLLED_BACK:  # the pre-rollout route, in one command
        assert not table.canary and not table.shadow.model and table.live.model == "live"


def test_a_paused_rollout_holds_its_weight_and_ignores_verdicts() -> None:
    router = _in_state(PAUSED)
    assert router.rollouts[KEY].weight == 0.01
    assert feed(router, 200) == []
    router.on_command(command(events_pb2.ROLLOUT_ACTION_RESUME))
    assert router.rollouts[KEY].evidence.n == 0  # the resumed step starts on fresh verdicts


def test_a_restarted_router_resumes_at_the_same_step_and_weight() -> None:
    router = Router(CONFIG)
    published = list(router.on_adapter(adapter_event()))
    for _ in range(2):
        published += feed(router, 50)
    published += router.on_command(command(events_pb2.ROLLOUT_ACTION_PAUSE))
    tables = [o.event for o in published if o.topic is topics.ROUTES]
    events = [o.event for o in published if o.topic is topics.ROLLOUTS]
    restarted = Router(CONFIG)
    repairs = restore(restarted, [router.tables[KEY]], events)  # compacted: only the newest table
    assert repairs == [] and tables
    rollout = restarted.rollouts[KEY]
    assert (rollout.state, rollout.step, rollout.weight) == (PAUSED, 2, 0.05)
    restarted.on_command(command(events_pb2.ROLLOUT_ACTION_RESUME))
    assert restarted.rollouts[KEY].state == CANARY
    assert restarted.tables[KEY].version == router.tables[KEY].version + 1


def test_restore_republishes_a_table_that_lags_its_rollout_event() -> None:
    router = started()
    first_table = router.tables[KEY]
    outputs = feed(router, 50)  # advanced to 1%; pretend its table never reached Kafka
    events = [o.event for o in outputs if o.topic is topics.ROLLOUTS]
    restarted = Router(CONFIG)
    repairs = restore(restarted, [first_table], events)
    assert [r.topic for r in repairs] == [topics.ROUTES]
    table = repairs[0].event
    assert isinstance(table, events_pb2.RouteTable)
    assert [w.weight for w in table.canary] == [0.01] and table.version == first_table.version + 1


def test_a_candidate_that_breaks_in_its_first_canary_step_never_serves_more_than_that_step() -> None:
    router = Router(CONFIG)
    published = list(router.on_adapter(adapter_event()))
    published += feed(router, 50)  # fine in shadow: 1%
    for _ in range(50):
        published += feed(router, 1, passed=False)
        if router.rollouts[KEY].state == ROLLED_BACK:
            break
    assert router.rollouts[KEY].state == ROLLED_BACK
    shares = [
        w.weight for o in published if isinstance(o.event, events_pb2.RouteTable) for w in o.event.canary
    ]
    assert max(shares) == 0.01


def test_verdicts_from_before_the_step_began_do_not_count() -> None:
    router = started()
    stale = verdict()
    stale.meta.occurred_at.FromNanoseconds(router.rollouts[KEY].step_started_ns - 1)
    for _ in range(100):
        router.on_verdict(stale)
    assert router.rollouts[KEY].evidence.n == 0 and router.evaluate() == []


def test_an_adapter_rolls_out_on_the_triton_model_of_its_student() -> None:
    config = CumulusConfig(trainer=TrainerConfig(students=(StudentConfig(model="smollm2-135m-instruct"),
                                                           StudentConfig(model="student-b"))))  # fmt: skip
    router = Router(CONFIG, config.triton_model_for)
    event = adapter_event()
    event.base_model = "student-b"
    table = router.on_adapter(event)[0].event
    assert isinstance(table, events_pb2.RouteTable) and table.shadow.model == "student-b"
