"""Two tenants naming their workflows alike: each has its own rollout, route table and restore."""

from __future__ import annotations

from cumulus.kafka import codec, topics
from cumulus.rollout_states import CANARY, PAUSED, ROLLED_BACK, SHADOW
from cumulus.v1 import events_pb2
from services.router.core import Output, Router
from services.router.listing import describe
from services.router.restore import restore
from services.router.rollout import WorkflowKey
from tests.unit.router.test_rollout import CONFIG, WORKFLOW, adapter_event, command, feed, verdict

ACME, GLOBEX = WorkflowKey("acme", WORKFLOW), WorkflowKey("globex", WORKFLOW)
ADAPTER = {ACME: "ad-acme", GLOBEX: "ad-globex"}


def both_started() -> tuple[Router, list[Output]]:
    router = Router(CONFIG)
    published = []
    for key, adapter_id in ADAPTER.items():
        published += router.on_adapter(adapter_event(adapter_id, tenant=key.tenant))
    return router, published


def test_each_tenant_starts_its_own_rollout_and_publishes_its_own_table() -> None:
    router, published = both_started()
    tables = [o.event for o in published if o.topic is topics.ROUTES]
    assert [(t.meta.tenant, t.meta.workflow, t.version, t.shadow.adapter_id) for t in tables] == [
        ("acme", WORKFLOW, 1, "ad-acme"),
        ("globex", WORKFLOW, 1, "ad-globex"),
    ]
    keys = {codec.encode_key(t.meta.tenant, t.meta.workflow) for t in tables}
    assert len(keys) == 2  # the compacted routes topic keeps both
    assert {k: r.state for k, r in router.rollouts.items()} == {ACME: SHADOW, GLOBEX: SHADOW}
    assert [(row["tenant"], row["adapter_id"], row["route_version"]) for row in describe(router)] == [
        ("acme", "ad-acme", 1),
        ("globex", "ad-globex", 1),
    ]


def test_one_tenants_verdicts_never_move_the_other() -> None:
    router, _ = both_started()
    outputs = feed(router, 50, adapter_id="ad-acme", tenant="acme")
    assert router.rollouts[ACME].state == CANARY
    assert router.rollouts[GLOBEX].state == SHADOW and router.rollouts[GLOBEX].evidence.n == 0
    assert {(o.event.meta.tenant, o.topic.name) for o in outputs} == {
        ("acme", topics.ROUTES.name),
        ("acme", topics.ROLLOUTS.name),
    }
    # globex's verdicts about acme's adapter count nowhere, and its failures roll back only its own
    assert feed(router, 100, adapter_id="ad-acme", tenant="globex") == []
    assert router.rollouts[ACME].evidence.n == 0 and router.rollouts[GLOBEX].evidence.n == 0
    feed(router, 20, adapter_id="ad-globex", tenant="globex", error=True)
    assert router.rollouts[GLOBEX].state == ROLLED_BACK and router.rollouts[ACME].state == CANARY
    assert [w.weight for w in router.tables[ACME].canary] == [0.01] and not router.tables[GLOBEX].canary


def test_one_tenants_commands_and_adapters_never_touch_the_other() -> None:
    router, _ = both_started()
    outputs = router.on_command(command(events_pb2.ROLLOUT_ACTION_PAUSE, tenant="globex"))
    assert [o.event.meta.tenant for o in outputs] == ["globex", "globex"]
    assert router.rollouts[GLOBEX].state == PAUSED and router.rollouts[ACME].state == SHADOW
    assert router.on_command(command(events_pb2.ROLLOUT_ACTION_PAUSE, tenant="initech")) == []
    # acme's rollout is busy; a new globex adapter waits on globex's rollout only
    assert router.on_adapter(adapter_event("ad-acme-2", tenant="acme")) == []
    router.on_command(command(events_pb2.ROLLOUT_ACTION_ROLLBACK, tenant="globex"))
    assert router.on_adapter(adapter_event("ad-globex-2", tenant="globex"))
    assert (router.rollouts[GLOBEX].adapter_id, router.rollouts[ACME].adapter_id) == (
        "ad-globex-2",
        "ad-acme",
    )


def test_restore_rebuilds_both_tenants_rollouts() -> None:
    router, published = both_started()
    published += feed(router, 50, adapter_id="ad-acme", tenant="acme")
    published += router.on_command(command(events_pb2.ROLLOUT_ACTION_PAUSE, tenant="globex"))
    events = [o.event for o in published if o.topic is topics.ROLLOUTS]
    assert isinstance(events[0], events_pb2.RolloutEvent)
    restarted = Router(CONFIG)
    assert restore(restarted, list(router.tables.values()), events) == []  # nothing to repair
    assert {k: (r.adapter_id, r.state, r.step, r.weight) for k, r in restarted.rollouts.items()} == {
        ACME: ("ad-acme", CANARY, 1, 0.01),
        GLOBEX: ("ad-globex", PAUSED, 0, 0.0),
    }
    assert {k: t.version for k, t in restarted.tables.items()} == {ACME: 2, GLOBEX: 2}
    restarted.on_verdict(verdict(adapter_id="ad-acme", tenant="acme"))
    assert restarted.rollouts[ACME].evidence.n == 1 and restarted.rollouts[GLOBEX].evidence.n == 0
