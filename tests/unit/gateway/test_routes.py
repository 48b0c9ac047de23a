"""Route tables: newest version wins, tenants are isolated, the split is stable and proportional."""

import uuid

import pytest

from cumulus.v1 import common_pb2, events_pb2
from services.gateway.routes import RouteBook, restricted_to_model, split_point

LIVE = common_pb2.RouteTarget(model="live")
CANDIDATE = common_pb2.RouteTarget(model="small", adapter_id="ad-1", lora_task_id=7)
SHADOW = common_pb2.RouteTarget(model="small", adapter_id="ad-2", lora_task_id=8)


def table(version: int, *, tenant: str = "acme", workflow: str = "wf", weight: float = 0.0, **fields: object):
    meta = common_pb2.EventMeta(event_id=uuid.uuid4().hex, tenant=tenant, workflow=workflow)
    canary = [events_pb2.WeightedTarget(target=CANDIDATE, weight=weight)] if weight else []
    return events_pb2.RouteTable(meta=meta, version=version, live=LIVE, canary=canary, **fields)  # type: ignore[arg-type]


def keys(n: int) -> list[str]:
    return [f"req-{i}" for i in range(n)]


def test_default_route_is_the_live_model() -> None:
    plan = RouteBook().plan("acme", "wf", "k")
    assert plan.primary.target.model == "live" and plan.primary.mode == common_pb2.ROUTE_MODE_LIVE
    assert plan.shadow is None and plan.table_version == 0 and not plan.is_candidate


def test_older_and_equal_versions_are_ignored() -> None:
    book = RouteBook()
    assert book.apply(table(2, weight=1.0))
    assert not book.apply(table(1))
    assert not book.apply(table(2))
    assert book.table("acme", "wf").version == 2  # type: ignore[union-attr]
    assert book.apply(table(3))
    assert book.plan("acme", "wf", "k").primary.target == LIVE


def test_tenant_never_reaches_another_tenants_adapter() -> None:
    book = RouteBook()
    book.apply(table(1, tenant="acme", weight=1.0))
    assert book.plan("acme", "wf", "k").primary.target == CANDIDATE
    assert book.plan("globex", "wf", "k").primary.target.model == "live"


@pytest.mark.parametrize("weight", [0.01, 0.05, 0.25, 0.5])
def test_canary_share_matches_its_weight(weight: float) -> None:
    book = RouteBook()
    book.apply(table(1, weight=weight))
    n = 20_000
    share = sum(book.plan("acme", "wf", k).is_candidate for k in keys(n)) / n
    tolerance = 4 * (weight * (1 - weight) / n) ** 0.5  # four standard deviations
    assert abs(share - weight) < tolerance


def test_split_is_stable_and_grows_monotonically() -> None:
    small, large = RouteBook(), RouteBook()
    small.apply(table(1, weight=0.05))
    large.apply(table(1, weight=0.25))
    for key in keys(2000):
        first = small.plan("acme", "wf", key)
        assert small.plan("acme", "wf", key) == first  # same key, same side, every time
        if first.is_candidate:  # raising the weight never moves a canary user back to live
            assert large.plan("acme", "wf", key).is_candidate
    assert split_point("wf", "k") == split_point("wf", "k") != split_point("other", "k")


def test_promoted_mode_at_full_weight() -> None:
    book = RouteBook()
    book.apply(table(1, weight=1.0, rollout_state="promoted"))
    assert book.plan("acme", "wf", "any").primary.mode == common_pb2.ROUTE_MODE_PROMOTED


def test_shadow_rate_is_honoured_and_independent_of_the_canary() -> None:
    book = RouteBook()
    book.apply(table(1, weight=0.5, shadow=SHADOW, shadow_rate=0.2))
    plans = [book.plan("acme", "wf", k) for k in keys(20_000)]
    shadowed = [p for p in plans if p.shadow is not None]
    assert abs(len(shadowed) / len(plans) - 0.2) < 0.015
    canary_among_shadowed = sum(p.is_candidate for p in shadowed) / len(shadowed)
    assert abs(canary_among_shadowed - 0.5) < 0.05


def test_no_shadow_copy_of_the_target_that_already_answers() -> None:
    book = RouteBook()
    book.apply(table(1, weight=1.0, shadow=CANDIDATE, shadow_rate=1.0))
    assert book.plan("acme", "wf", "k").shadow is None


def test_raw_prompts_only_go_to_their_own_model() -> None:
    book = RouteBook()
    book.apply(table(1, weight=1.0, shadow=SHADOW, shadow_rate=1.0))
    plan = book.plan("acme", "wf", "k")
    on_live = restricted_to_model(plan, "live")
    assert on_live.primary.target == LIVE and not on_live.is_candidate and on_live.shadow is None
    on_small = restricted_to_model(plan, "small")
    assert (
        on_small.primary.target == CANDIDATE and on_small.live.model == "small" and on_small.shadow == SHADOW
    )
