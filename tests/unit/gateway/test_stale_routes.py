"""Router absence seen from the gateway: a rollout's table the router stops vouching for is stale
(kept, reported); a table that reached Kafka long after it was decided cannot raise a weight."""

from __future__ import annotations

import time

import pytest

from cumulus.config import CumulusConfig
from services.gateway.route_listing import describe
from services.gateway.routes import Applied, RouteBook
from tests.unit.gateway.test_routes import CANDIDATE, table

MAX_AGE_S = 60
S = 10**9


def stamped(version: int, published_ns: int, weight: float = 0.0, state: str = "canary"):  # type: ignore[no-untyped-def]
    made = table(version, weight=weight, rollout_state=state)
    made.meta.published_at.FromNanoseconds(published_ns)
    return made


def weight_of(book: RouteBook) -> float:
    found = book.table("acme", "wf")
    assert found is not None
    return sum(w.weight for w in found.canary)


def test_heartbeats_keep_a_table_fresh_and_their_absence_makes_it_stale() -> None:
    book, now = RouteBook(max_age_s=MAX_AGE_S), time.time_ns()
    assert book.apply(stamped(1, now, weight=0.05), appended_ns=now) is Applied.KEPT
    assert book.stale(now + 30 * S) == []
    beat = now + 50 * S
    assert book.apply(stamped(1, beat, weight=0.05), appended_ns=beat) is Applied.VOUCHED
    assert book.stale(beat + 30 * S) == []
    [stale] = book.stale(beat + (MAX_AGE_S + 1) * S)
    assert (stale.tenant, stale.workflow, stale.rollout_state) == ("acme", "wf", "canary")
    assert stale.age_s == pytest.approx(MAX_AGE_S + 1, abs=0.1)
    assert weight_of(book) == 0.05  # still served as it was


def test_finished_rollouts_are_never_stale() -> None:
    book, long_ago = RouteBook(max_age_s=MAX_AGE_S), time.time_ns() - 3600 * S
    book.apply(stamped(1, long_ago, state="rolled_back"), appended_ns=long_ago)
    assert book.stale() == []


def test_a_table_replayed_late_cannot_raise_a_weight_until_vouched_for() -> None:
    book, now = RouteBook(max_age_s=MAX_AGE_S), time.time_ns()
    book.apply(stamped(1, now - 600 * S, weight=0.01), appended_ns=now - 600 * S)
    # The router decided 5% ten minutes ago; its spool delivered the table only now.
    assert book.apply(stamped(2, now - 600 * S, weight=0.05), appended_ns=now) is Applied.CAPPED
    assert weight_of(book) == 0.01 and book.table("acme", "wf").version == 2  # type: ignore[union-attr]
    # A late copy of the same version changes nothing; the router's fresh heartbeat lifts the cap.
    assert book.apply(stamped(2, now - 500 * S, weight=0.05), appended_ns=now) is Applied.VOUCHED
    assert weight_of(book) == 0.01
    assert book.apply(stamped(2, now, weight=0.05), appended_ns=now) is Applied.KEPT
    assert weight_of(book) == 0.05


def test_a_late_table_may_still_lower_a_weight_or_roll_back() -> None:
    book, now = RouteBook(max_age_s=MAX_AGE_S), time.time_ns()
    book.apply(stamped(1, now, weight=0.25), appended_ns=now)
    assert book.apply(stamped(2, now - 600 * S, state="rolled_back"), appended_ns=now) is Applied.KEPT
    assert weight_of(book) == 0.0


def test_a_restarted_gateway_replays_old_tables_as_they_were() -> None:
    book, long_ago = RouteBook(max_age_s=MAX_AGE_S), time.time_ns() - 3600 * S
    for version, weight in ((1, 0.01), (2, 0.05), (3, 1.0)):
        published = long_ago + version * S
        assert book.apply(stamped(version, published, weight, "promoted"), appended_ns=published)
    assert weight_of(book) == 1.0
    found = book.table("acme", "wf")
    assert found is not None and found.canary[0].target == CANDIDATE


def test_the_listing_names_stale_routes() -> None:
    book, long_ago = RouteBook(max_age_s=MAX_AGE_S), time.time_ns() - 3600 * S
    book.apply(stamped(1, long_ago, weight=0.05), appended_ns=long_ago)
    body = describe(book)
    assert body["route_tables"] == 1 and body["max_age_s"] == MAX_AGE_S
    assert [(s["workflow"], s["rollout_state"]) for s in body["stale"]] == [("wf", "canary")]


def test_the_max_age_must_outlast_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="route_max_age_s"):
        CumulusConfig.model_validate({"gateway": {"route_max_age_s": 20}, "router": {"heartbeat_s": 15}})
