"""Route tables and the traffic split: which model (and adapter) answers a request.

The router publishes one ``RouteTable`` per (tenant, workflow) on cumulus.routes.v1; ``RouteBook`` keeps the
newest version of each (older versions are ignored, so a replayed or reordered table never rolls
a route back). Tables are keyed by (tenant, workflow) from their metadata: a tenant only ever
reaches adapters of its own workflows, whatever workflow name it sends.

While a rollout is in progress (or promoted) the router re-publishes its table every
``router.heartbeat_s`` (same version); the book notes when each table was last vouched for. A
table not vouched for within ``max_age_s`` is stale (the router is down or cut off): it keeps
being served as it is, and it is reported. A newer table that reached Kafka more than
``max_age_s`` after the router published it (its spool replayed late: decided on evidence from
then) cannot raise a canary weight: its weights are capped at those in force until the router
vouches for it afresh.

The split is a stable hash of the session key (or the request id when there is none) and the
workflow, mapped to [0, 1): the same key always lands on the same side of a canary, and the
workflow in the hash keeps different workflows' canaries from hitting the same users.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from enum import Enum

from cumulus.rollout_states import PROMOTED, WATCHED
from cumulus.v1 import common_pb2, events_pb2

LIVE_MODEL = "live"
_HASH_SCALE = float(2**64)


@dataclass(frozen=True)
class RoutePlan:
    """Where one request goes: the answering route, the live fallback, and optional copies."""

    primary: common_pb2.Route
    live: common_pb2.RouteTarget
    """Answers when the primary is a candidate that fails (mode FALLBACK)."""
    shadow: common_pb2.RouteTarget | None
    """A candidate adapter the request is also copied to (graded against the primary's answer)."""
    table_version: int
    """Version of the route table used; 0 for the default route."""
    anchor: common_pb2.RouteTarget | None = None
    """The live model, also asked while an adapter answers or is shadowed: its answer is what the
    adapters' answers are graded against (a promoted adapter's audit; v2 and v1 both vs live)."""

    @property
    def is_candidate(self) -> bool:
        """True when the primary is an adapter under rollout rather than the live model."""
        return self.primary.mode in (common_pb2.ROUTE_MODE_CANARY, common_pb2.ROUTE_MODE_PROMOTED)


def split_point(workflow: str, key: str, salt: str = "") -> float:
    """A stable number in [0, 1) for ``key`` within ``workflow``; ``salt`` gives an independent one."""
    data = f"{salt}\x1f{workflow}\x1f{key}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / _HASH_SCALE


class Applied(Enum):
    """What ``RouteBook.apply`` did with a table."""

    KEPT = "applied"
    CAPPED = "capped"
    """Newer, but published too long ago to raise a weight: kept with its canary weights capped
    until the router vouches for it afresh."""
    VOUCHED = "vouched"
    """The version in force again (the router's heartbeat): only its freshness was noted."""
    OLDER = "ignored_older"

    def __bool__(self) -> bool:
        return self in (Applied.KEPT, Applied.CAPPED)


@dataclass(frozen=True)
class StaleRoute:
    tenant: str
    workflow: str
    rollout_state: str
    age_s: float
    """Seconds since the router last published (or re-published) the table in force."""


class RouteBook:
    """The newest RouteTable of every (tenant, workflow) and the split that reads it."""

    def __init__(self, default_live: common_pb2.RouteTarget | None = None, max_age_s: float = 120.0) -> None:
        self.default_live = default_live or common_pb2.RouteTarget(model=LIVE_MODEL)
        self.max_age_ns = int(max_age_s * 1e9)
        self._tables: dict[tuple[str, str], events_pb2.RouteTable] = {}
        self._vouched_ns: dict[tuple[str, str], int] = {}
        self._capped: set[tuple[str, str]] = set()
        self._last_floor_audit_ns: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._tables)

    def apply(self, table: events_pb2.RouteTable, appended_ns: int | None = None) -> Applied:
        """Keep ``table`` if it is newer than the one held for its workflow (truthy when kept).

        ``appended_ns`` is when its record reached Kafka (the record's timestamp; default now).
        Measured against that, not against now, a gateway that restarts and replays old tables
        keeps them as they were. A table with no publish time (written by hand) counts as on time."""
        key = (table.meta.tenant, table.meta.workflow)
        appended_ns = time.time_ns() if appended_ns is None else appended_ns
        published_ns = table.meta.published_at.ToNanoseconds() or appended_ns
        late = appended_ns - published_ns > self.max_age_ns
        current = self._tables.get(key)
        if current is not None and table.version < current.version:
            return Applied.OLDER
        if current is not None and table.version == current.version:
            self._vouched_ns[key] = max(self._vouched_ns.get(key, 0), published_ns)
            if late or key not in self._capped:
                return Applied.VOUCHED
            self._capped.discard(key)  # vouched for on time: its weights stand as published
            self._tables[key] = table
            return Applied.KEPT
        outcome = Applied.KEPT
        self._capped.discard(key)
        if current is not None and late and _raises(table, current):
            table, outcome = _capped(table, current), Applied.CAPPED
            self._capped.add(key)
        self._tables[key] = table
        self._vouched_ns[key] = published_ns
        return outcome

    def stale(self, now_ns: int | None = None) -> list[StaleRoute]:
        """Rollouts (in progress or promoted) whose table the router has not vouched for lately."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        out = []
        for (tenant, workflow), table in self._tables.items():
            age_ns = now_ns - self._vouched_ns.get((tenant, workflow), now_ns)
            if table.rollout_state in WATCHED and age_ns > self.max_age_ns:
                out.append(StaleRoute(tenant, workflow, table.rollout_state, round(age_ns / 1e9, 1)))
        return out

    def table(self, tenant: str, workflow: str) -> events_pb2.RouteTable | None:
        """The table in force for ``workflow`` of ``tenant``, if the router published one."""
        return self._tables.get((tenant, workflow))

    def plan(self, tenant: str, workflow: str, split_key: str) -> RoutePlan:
        """Route one request of ``workflow``; ``split_key`` is its session key or request id."""
        table = self._tables.get((tenant, workflow))
        if table is None:
            live = self.default_live
            return RoutePlan(_route(live, common_pb2.ROUTE_MODE_LIVE), live, None, 0)
        live = table.live if table.live.model else self.default_live
        primary = _route(live, common_pb2.ROUTE_MODE_LIVE)
        point = split_point(workflow, split_key)
        cumulative = 0.0
        for weighted in table.canary:
            cumulative += max(weighted.weight, 0.0)
            if point < cumulative and weighted.target.model:
                promoted = weighted.weight >= 1.0 or table.rollout_state == PROMOTED
                mode = common_pb2.ROUTE_MODE_PROMOTED if promoted else common_pb2.ROUTE_MODE_CANARY
                primary = _route(weighted.target, mode)
                break
        shadow = None
        anchor, anchor_rate = _anchor_of(table)
        copied = table.shadow.model and table.shadow != primary.target and table.shadow != anchor
        if copied and split_point(workflow, split_key, salt="shadow") < table.shadow_rate:
            shadow = table.shadow
        if anchor is not None and (primary.target.adapter_id or shadow is not None):
            sampled = split_point(workflow, split_key, salt="anchor") < anchor_rate
            if not (sampled or self._audit_due((tenant, workflow), table, primary)):
                anchor = None
        else:
            anchor = None
        return RoutePlan(primary, live, shadow, table.version, anchor)

    def _audit_due(
        self, key: tuple[str, str], table: events_pb2.RouteTable, primary: common_pb2.Route
    ) -> bool:
        """The floor of a promoted adapter's audit: one request per 1/``audit_min_per_hour`` of an
        hour is audited whatever the share says, so a quiet workflow still gets its samples."""
        if not table.audit_min_per_hour or primary.mode != common_pb2.ROUTE_MODE_PROMOTED:
            return False
        now_ns = time.monotonic_ns()
        if now_ns - self._last_floor_audit_ns.get(key, -(2**62)) < 3600 * 10**9 // table.audit_min_per_hour:
            return False
        self._last_floor_audit_ns[key] = now_ns
        return True


def _anchor_of(table: events_pb2.RouteTable) -> tuple[common_pb2.RouteTarget | None, float]:
    """The table's copy to the live model and its share; a router from before ``anchor`` wrote a
    promoted adapter's audit as a shadow copy to the live model (a target with no adapter)."""
    if table.anchor.model:
        return table.anchor, table.anchor_rate
    if table.rollout_state == PROMOTED and table.shadow.model and not table.shadow.adapter_id:
        return table.shadow, table.shadow_rate
    return None, 0.0


def _route(target: common_pb2.RouteTarget, mode: common_pb2.RouteMode) -> common_pb2.Route:
    return common_pb2.Route(target=target, mode=mode)


def restricted_to_model(plan: RoutePlan, model: str) -> RoutePlan:
    """``plan`` for a prompt already rendered for ``model`` (the KServe drop-in).

    Such a prompt fits only its own model's template, so targets on another base model neither
    answer nor shadow it: the request then goes to ``model`` itself, without rollout.
    """
    live = plan.live if plan.live.model == model else common_pb2.RouteTarget(model=model)
    primary = plan.primary if plan.primary.target.model == model else _route(live, common_pb2.ROUTE_MODE_LIVE)
    shadow = plan.shadow if plan.shadow is not None and plan.shadow.model == model else None
    anchor = plan.anchor if plan.anchor is not None and plan.anchor.model == model else None
    return RoutePlan(primary, live, shadow, plan.table_version, anchor)


def _weights(table: events_pb2.RouteTable) -> dict[str, float]:
    return {w.target.adapter_id: w.weight for w in table.canary}


def _raises(table: events_pb2.RouteTable, current: events_pb2.RouteTable) -> bool:
    held = _weights(current)
    return any(weight > held.get(adapter, 0.0) for adapter, weight in _weights(table).items())


def _capped(table: events_pb2.RouteTable, current: events_pb2.RouteTable) -> events_pb2.RouteTable:
    """``table`` with each canary weight at most what ``current`` gives that adapter (0 if none)."""
    held = _weights(current)
    capped = events_pb2.RouteTable()
    capped.CopyFrom(table)
    del capped.canary[:]
    for weighted in table.canary:
        weight = min(weighted.weight, held.get(weighted.target.adapter_id, 0.0))
        if weight > 0:
            capped.canary.add(target=weighted.target, weight=weight)
    return capped
