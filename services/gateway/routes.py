"""Route tables and the traffic split: which model (and adapter) answers a request.

The router publishes one ``RouteTable`` per (tenant, workflow) on cumulus.routes.v1; ``RouteBook`` keeps the
newest version of each (older versions are ignored, so a replayed or reordered table never rolls
a route back). Tables are keyed by (tenant, workflow) from their metadata: a tenant only ever
reaches adapters of its own workflows, whatever workflow name it sends.

The split is a stable hash of the session key (or the request id when there is none) and the
workflow, mapped to [0, 1): the same key always lands on the same side of a canary, and the
workflow in the hash keeps different workflows' canaries from hitting the same users.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cumulus.v1 import common_pb2, events_pb2

LIVE_MODEL = "live"
_HASH_SCALE = float(2**64)


@dataclass(frozen=True)
class RoutePlan:
    """Where one request goes: the answering route, the live fallback, and an optional shadow copy."""

    primary: common_pb2.Route
    live: common_pb2.RouteTarget
    """Answers when the primary is a candidate that fails (mode FALLBACK)."""
    shadow: common_pb2.RouteTarget | None
    table_version: int
    """Version of the route table used; 0 for the default route."""

    @property
    def is_candidate(self) -> bool:
        """True when the primary is an adapter under rollout rather than the live model."""
        return self.primary.mode in (common_pb2.ROUTE_MODE_CANARY, common_pb2.ROUTE_MODE_PROMOTED)


def split_point(workflow: str, key: str, salt: str = "") -> float:
    """A stable number in [0, 1) for ``key`` within ``workflow``; ``salt`` gives an independent one."""
    data = f"{salt}\x1f{workflow}\x1f{key}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / _HASH_SCALE


class RouteBook:
    """The newest RouteTable of every (tenant, workflow) and the split that reads it."""

    def __init__(self, default_live: common_pb2.RouteTarget | None = None) -> None:
        self.default_live = default_live or common_pb2.RouteTarget(model=LIVE_MODEL)
        self._tables: dict[tuple[str, str], events_pb2.RouteTable] = {}

    def __len__(self) -> int:
        return len(self._tables)

    def apply(self, table: events_pb2.RouteTable) -> bool:
        """Keep ``table`` if it is newer than the one held for its workflow; True when kept."""
        key = (table.meta.tenant, table.meta.workflow)
        current = self._tables.get(key)
        if current is not None and table.version <= current.version:
            return False
        self._tables[key] = table
        return True

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
                promoted = weighted.weight >= 1.0 or table.rollout_state == "promoted"
                mode = common_pb2.ROUTE_MODE_PROMOTED if promoted else common_pb2.ROUTE_MODE_CANARY
                primary = _route(weighted.target, mode)
                break
        shadow = None
        if (
            table.shadow.model
            and table.shadow != primary.target
            and split_point(workflow, split_key, salt="shadow") < table.shadow_rate
        ):
            shadow = table.shadow
        return RoutePlan(primary, live, shadow, table.version)


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
    return RoutePlan(primary, live, shadow, plan.table_version)
