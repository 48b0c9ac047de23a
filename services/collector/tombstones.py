"""What was erased (the ``erasures`` table), kept in memory so that capture can drop an event of
an erased request, session, user or tenant that arrives after the erasure: one still in Kafka,
or in a gateway's spool while Kafka was away.

A request id is dropped whenever it comes back (ids are unique). A session, user or tenant is
dropped only for events that occurred before its erasure: what the same user does afterwards is
new data. The datasets an erasure rewrote are stored with it too (for the record); capture has
no use for them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from google.protobuf.message import Message

from cumulus.privacy.events import USER_METADATA, pseudonym
from services.collector.clickhouse import schema
from services.collector.rows import aware
from services.collector.store import ClickHouseStore

_LOAD_SQL = "SELECT tenant, kind, value, occurred_at FROM {db}.erasures FINAL"


class Tombstones:
    def __init__(self, db: ClickHouseStore, key: bytes) -> None:
        self.db, self.key = db, key
        self._requests: dict[str, set[str]] = defaultdict(set)
        self._before: dict[tuple[str, str, str], int] = {}
        """(tenant, kind, value) -> ns before which its events are dropped (session, user, tenant)."""

    async def load(self) -> None:
        for row in await self.db.query(_LOAD_SQL.replace("{db}", f"`{self.db.database}`")):
            self._note(row["tenant"], row["kind"], row["value"], _ns(row["occurred_at"]))

    async def add(self, erasure_id: str, tenant: str, stones: list[tuple[str, str]]) -> None:
        """Store (kind, value) tombstones of one erasure, then honour them."""
        now = dt.datetime.now(dt.UTC)
        rows: list[list[Any]] = [[erasure_id, tenant, kind, value, now] for kind, value in stones]
        for start in range(0, len(rows), 5000):
            await self.db.insert(schema.ERASURES, rows[start : start + 5000], token=f"{erasure_id}-{start}")
        for kind, value in stones:
            self._note(tenant, kind, value, _ns(now))

    def _note(self, tenant: str, kind: str, value: str, at_ns: int) -> None:
        if kind == "request":
            self._requests[tenant].add(value)
        elif kind != "dataset":
            self._before[(tenant, kind, value)] = max(at_ns, self._before.get((tenant, kind, value), 0))

    def drops(self, event: Message) -> bool:
        """Whether ``event`` (decoded, redacted or not) belongs to something erased."""
        meta = getattr(event, "meta", None)
        if meta is None:
            return False
        tenant, occurred = meta.tenant, meta.occurred_at.ToNanoseconds()
        if getattr(event, "request_id", "") in self._requests.get(tenant, ()):
            return True
        if not self._before:
            return False
        candidates = [("tenant", tenant)]
        if session := getattr(event, "session_key", ""):
            candidates.append(("session", pseudonym(self.key, session)))
        metadata = getattr(event, "metadata", None)
        if metadata is not None and (user := metadata.get(USER_METADATA, "")):
            candidates.append(("user", pseudonym(self.key, user, "user")))
        return any(occurred < self._before.get((tenant, kind, value), 0) for kind, value in candidates)


def _ns(value: dt.datetime) -> int:
    return int(aware(value).timestamp() * 1e9)
