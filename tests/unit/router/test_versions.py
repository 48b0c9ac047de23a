"""Versions: v2 rolls out over a promoted v1, `rollback --to` returns to any earlier ready version
at once, refuses unknown, rejected and held cases with the reason, and survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulus.artifacts import ArtifactStore
from cumulus.errors import Conflict, InvalidArgument, NotFound
from cumulus.kafka import topics
from cumulus.kafka.signing import CommandSigner
from cumulus.rollout_states import CANARY, PROMOTED, ROLLED_BACK, SHADOW
from cumulus.v1 import events_pb2
from services.router.command_guard import CommandGuard
from services.router.core import Output, Router
from services.router.handler import RouterHandler
from services.router.listing import versions_of
from services.router.restore import restore
from tests.unit.router.test_rollout import CONFIG, KEY, TENANT, WORKFLOW, adapter_event, command, feed
from tests.unit.router.test_signed_commands import Publisher, command_record, operator_command


def promote_all(router: Router, adapter_id: str) -> list[Output]:
    published = list(router.on_adapter(adapter_event(adapter_id)))
    while router.rollouts[KEY].state != PROMOTED:
        published += feed(router, 50, adapter_id=adapter_id)
    return published


def rollback_to(ref: str) -> events_pb2.RolloutCommand:
    rollback = command(events_pb2.ROLLOUT_ACTION_ROLLBACK)
    rollback.to_adapter_id = ref
    return rollback


def two_versions() -> tuple[Router, list[Output]]:
    router = Router(CONFIG)
    published = promote_all(router, "ad-v1")
    published += promote_all(router, "ad-v2")
    return router, published


def test_v2_rolls_out_over_v1_and_history_records_parents_and_outcomes() -> None:
    router = Router(CONFIG)
    promote_all(router, "ad-v1")
    router.on_adapter(adapter_event("ad-v2"))
    rollout = router.rollouts[KEY]
    assert rollout.incumbent.adapter_id == "ad-v1" and rollout.state == SHADOW
    assert router.tables[KEY].live.adapter_id == "ad-v1"  # v2 is judged against, and falls back to, v1
    router.on_adapter(adapter_event("ad-v3", gate=False))  # rejected by its gate: a version, never served
    rows = versions_of(router, TENANT, WORKFLOW)["versions"]
    assert [(r["version"], r["adapter_id"], r["state"], r["parent"]) for r in rows] == [
        ("v1", "ad-v1", PROMOTED, "live"),
        ("v2", "ad-v2", SHADOW, "ad-v1"),
        ("v3", "ad-v3", "rejected", ""),
    ]


def test_rollback_to_v1_serves_it_at_once_and_steps_v2_down() -> None:
    router, _ = two_versions()
    outputs = router.on_command(rollback_to("v1"))
    assert [o.topic for o in outputs] == [topics.ROLLOUTS, topics.ROUTES, topics.ROLLOUTS]
    stepped_down, table, reinstated = (o.event for o in outputs)
    assert isinstance(stepped_down, events_pb2.RolloutEvent) and isinstance(table, events_pb2.RouteTable)
    assert isinstance(reinstated, events_pb2.RolloutEvent)
    assert (stepped_down.adapter_id, stepped_down.to_state) == ("ad-v2", ROLLED_BACK)
    assert (reinstated.adapter_id, reinstated.to_state, reinstated.weight) == ("ad-v1", PROMOTED, 1.0)
    assert "rollback to v1 (ad-v1)" in reinstated.reason
    assert [(w.target.adapter_id, w.weight) for w in table.canary] == [("ad-v1", 1.0)]
    assert table.canary[0].target.adapter_sha256 == "ab" * 32  # pinned as when it was first served
    assert router.on_command(rollback_to("ad-v1")) == []  # already served: nothing to do
    states = [r["state"] for r in versions_of(router, TENANT, WORKFLOW)["versions"]]
    assert states == [PROMOTED, ROLLED_BACK]
    router.on_command(rollback_to("v2"))  # forward again, the same way
    assert [w.target.adapter_id for w in router.tables[KEY].canary] == ["ad-v2"]


def test_rollback_to_refuses_unknown_rejected_and_held_with_the_reason() -> None:
    router, _ = two_versions()
    with pytest.raises(NotFound, match=r"no version 'v9'.*v1 \(ad-v1\), v2 \(ad-v2\)"):
        router.on_command(rollback_to("v9"))
    router.on_adapter(adapter_event("ad-v3", gate=False))
    with pytest.raises(InvalidArgument, match=r"v3 .*rejected"):
        router.on_command(rollback_to("v3"))
    router.on_adapter(adapter_event("ad-v4"))
    feed(router, 50, adapter_id="ad-v4")
    assert router.rollouts[KEY].state == CANARY
    with pytest.raises(Conflict, match="held by the canary rollout of ad-v4") as held:
        router.on_command(rollback_to("v1"))
    assert "cumulus rollout rollback tickets --tenant acme" in (held.value.fix or "")
    assert router.rollouts[KEY].adapter_id == "ad-v4"  # nothing changed


def test_another_tenants_version_is_unknown_here() -> None:
    router, _ = two_versions()
    other = adapter_event("ad-globex", tenant="globex")
    router.on_adapter(other)
    with pytest.raises(NotFound, match="acme/tickets has no version 'ad-globex'"):
        router.on_command(rollback_to("ad-globex"))


def test_versions_and_rollback_to_survive_a_restart() -> None:
    router, published = two_versions()
    adapters = [adapter_event("ad-v1"), adapter_event("ad-v2")]
    events = [o.event for o in published if o.topic is topics.ROLLOUTS]
    restarted = Router(CONFIG)
    restore(restarted, [router.tables[KEY]], events, adapters)  # type: ignore[arg-type]
    rows = versions_of(restarted, TENANT, WORKFLOW)["versions"]
    assert [(r["version"], r["state"], r["parent"]) for r in rows] == [
        ("v1", "superseded", "live"),
        ("v2", PROMOTED, "ad-v1"),
    ]
    restarted.on_command(rollback_to("v1"))
    assert [w.target.adapter_id for w in restarted.tables[KEY].canary] == ["ad-v1"]


def test_the_handler_dead_letters_a_rollback_it_cannot_carry_out(tmp_path: Path) -> None:
    signer = CommandSigner.from_file(tmp_path / "command-key")
    router, publisher = Router(CONFIG), Publisher()
    promote_all(router, "ad-v1")
    handler = RouterHandler(publisher, router, signer, CommandGuard(tmp_path, 300), ArtifactStore(tmp_path))  # type: ignore[arg-type]
    bad = operator_command(tmp_path)
    bad.action, bad.to_adapter_id = events_pb2.ROLLOUT_ACTION_ROLLBACK, "v7"
    assert handler.decide([command_record(signer, pause=bad)]) == []
    [letter] = [event for topic, event in publisher.sent if topic == topics.DEADLETTER]
    assert "no version 'v7'" in letter.reason
    assert router.rollouts[KEY].state == PROMOTED
