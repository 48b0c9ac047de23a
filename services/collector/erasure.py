"""Erasure (`cumulus erase`): a tenant's requests, sessions, users, or everything, removed from
every store the collector owns, down to the adapters trained on them.

One erasure, in order:

1. the selector is resolved to request ids (sessions and users are stored as keyed pseudonyms,
   cumulus/privacy/events.py, so the raw values given are turned into those first);
2. their rows are deleted from every table that holds request data (``ALTER TABLE ... DELETE``
   with ``mutations_sync``: the rows are gone from the parts, not only hidden), and a count with
   ``FINAL`` must then find none; ``--all`` deletes the tenant from every table;
3. tombstones are stored (the ``erasures`` table): an event of an erased request, session, user
   or tenant still in Kafka or in a gateway's spool is dropped when it arrives
   (``Tombstones.drops``), so it cannot bring the rows back;
4. every dataset of the tenant holding such a request is rewritten without it (its manifest
   records the erasure; ``--all`` removes the tenant's datasets);
5. a training job on an affected dataset is waited for (``privacy.erasure_training_wait_s``);
   then the adapters trained on an affected dataset, and those warm-started from one of them,
   are tainted (services/collector/lineage.py) and the tenant's ``privacy.on_erasure`` decides;
6. the receipt (what was removed where, what became of each adapter, until when Kafka still holds
   raw events) is kept under <state_dir>/receipts and returned.

Running it again finds nothing more and says so: every step is idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from cumulus.artifacts import ArtifactStore, path_segment, write_json_atomically
from cumulus.errors import InvalidArgument, NotFound
from cumulus.kafka import topics
from cumulus.logs import get_logger
from cumulus.privacy.events import pseudonym
from cumulus.privacy.policy import TenantPrivacy
from services.collector.clickhouse import schema
from services.collector.erased_datasets import rewrite_datasets
from services.collector.lineage import act_on_tainted, retire_all, wait_for_training
from services.collector.store import ClickHouseStore
from services.collector.tombstones import Tombstones

log = get_logger("collector")
ROW_TABLES = (schema.REQUESTS, schema.FEEDBACK, schema.AUDIT_ANSWERS, schema.VERDICTS)
"""Tables with a row per request (or per request's verdict, feedback, audit answer)."""
_MAX_VALUES = 10_000
_CAPTURE_TOPICS = (topics.INFERENCE, topics.SHADOW, topics.FEEDBACK, topics.VERDICTS, topics.DEADLETTER)


def capture_screen(privacy: TenantPrivacy, tombstones: Tombstones) -> Callable[[Message], bool]:
    """What capture does to each event before its row is made: redact it in place (as its
    tenant's ``privacy.redact`` says), and drop it (False) if it belongs to something erased."""

    def screen(event: Message) -> bool:
        privacy.redact(event, "store")
        return not tombstones.drops(event)

    return screen


@dataclass(frozen=True)
class ErasureContext:
    """What an erasure reaches beyond ClickHouse."""

    key: bytes
    """The redaction key: sessions and users are stored as pseudonyms made with it."""
    artifacts: ArtifactStore
    receipts_dir: Path
    on_erasure: Callable[[str], str]
    """The tenant's ``privacy.on_erasure``: retrain or retire."""
    renominate: Callable[[str, str, str], Awaitable[str]] | None = None
    """(tenant, workflow, reason) -> the new candidate's id: a retrain without the erased rows."""
    training_wait_s: float = 900.0
    """How long an erasure waits for a training job on an affected dataset to end (it is then
    tainted like the others); the receipt says which it waited for, and how long."""


@dataclass(frozen=True)
class Selector:
    """What to erase: within ``tenant``, some requests, sessions, users, or everything."""

    tenant: str
    requests: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    everything: bool = False

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Selector:
        """Raises InvalidArgument naming the field at fault."""
        tenant = body.get("tenant")
        if not isinstance(tenant, str) or not tenant.strip():
            raise InvalidArgument("tenant", "is required", fix="`cumulus erase --tenant T ...`")
        lists = {name: body.get(name) or [] for name in ("requests", "sessions", "users")}
        for name, values in lists.items():
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise InvalidArgument(name, "must be a list of non-empty strings")
            if len(values) > _MAX_VALUES:
                raise InvalidArgument(name, f"more than {_MAX_VALUES} in one erasure", fix="split it")
        everything = body.get("all", False) is True
        if everything == any(lists.values()):
            raise InvalidArgument(
                "selector",
                "name what to erase: --request, --session or --user (any of them, repeated), or --all alone",
                fix="`cumulus erase --tenant T --user U` erases one user's data; --all the whole tenant's",
            )
        requests, sessions, users = (
            tuple(dict.fromkeys(lists[n])) for n in ("requests", "sessions", "users")
        )
        return cls(tenant, requests, sessions, users, everything)


class Eraser:
    """Carries out erasures (see the module docstring); one at a time."""

    def __init__(self, db: ClickHouseStore, tombstones: Tombstones, context: ErasureContext) -> None:
        self.db, self.tombstones, self.context = db, tombstones, context
        self._one_at_a_time = asyncio.Lock()

    def receipts(self, tenant: str = "") -> list[dict[str, Any]]:
        """The receipts kept (of ``tenant``, or every one), newest first."""
        root = self.context.receipts_dir
        paths = root.glob(f"{path_segment(tenant)}/*.json" if tenant else "*/*.json")
        return [json.loads(p.read_text()) for p in sorted(paths, key=lambda p: p.name, reverse=True)]

    async def erase(self, selector: Selector) -> dict[str, Any]:
        async with self._one_at_a_time:
            return await self._erase(selector)

    async def _erase(self, selector: Selector) -> dict[str, Any]:
        tenant = selector.tenant
        if not await self._known(tenant):
            raise NotFound(
                f"tenant {tenant!r} has no captured data", fix="check the name with `cumulus status`"
            )
        erasure_id = f"er-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
        key = self.context.key
        # As stored: pseudonyms, or the raw values for a tenant that does not redact.
        session_stones = [("session", pseudonym(key, s)) for s in selector.sessions]
        user_stones = [("user", pseudonym(key, u, "user")) for u in selector.users]
        sessions = sorted({*selector.sessions, *(v for _, v in session_stones)})
        users = sorted({*selector.users, *(v for _, v in user_stones)})
        ids = [] if selector.everything else await self._request_ids(tenant, selector, sessions, users)
        # The whole tenant: its adapters' rows go too, so whatever serves is listed (to retire) first.
        retiring = await retire_all(self.db, tenant) if selector.everything else []
        removed = await self._delete_rows(tenant, ids, selector.everything)
        stones = [("tenant", tenant)] if selector.everything else [("request", i) for i in ids]
        stones += session_stones + user_stones
        datasets = await rewrite_datasets(
            self.context.artifacts, tenant, set(ids), selector.everything, erasure_id
        )
        stones += [("dataset", d["dataset_id"]) for d in datasets]
        await self.tombstones.add(erasure_id, tenant, stones)
        touched = [d["dataset_id"] for d in datasets]
        waited = await wait_for_training(self.db, tenant, touched, self.context.training_wait_s)
        adapters = retiring or await act_on_tainted(self.db, self.context, tenant, touched)
        receipt = {
            "erasure_id": erasure_id,
            "tenant": tenant,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "selector": {
                "requests": len(selector.requests),
                "sessions": len(selector.sessions),
                "users": len(selector.users),
                "all": selector.everything,
            },
            "requests_found": len(ids),
            "clickhouse": removed,
            "datasets": datasets,
            "adapters": adapters,
            "waited_for_training": waited,
            "tombstones": len(stones),
            "kafka": self._kafka_note(),
            "nothing_found": not any(t["removed"] for t in removed.values()) and not datasets,
        }
        if receipt["nothing_found"]:
            receipt["note"] = (
                "nothing left to erase: no row, dataset or adapter holds these (already erased?)"
            )
        path = self.context.receipts_dir / path_segment(tenant) / f"{erasure_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, receipt)
        log.warning("erasure.done", tenant=tenant, erasure=erasure_id, requests=len(ids))
        return receipt

    async def _known(self, tenant: str) -> bool:
        sql = (
            "SELECT (SELECT count() FROM {db}.requests WHERE tenant = {t:String})"
            " + (SELECT count() FROM {db}.erasures WHERE tenant = {t:String})"
            " + (SELECT count() FROM {db}.candidates WHERE tenant = {t:String}) AS n"
        ).replace("{db}", f"`{self.db.database}`")
        rows = await self.db.query(sql, {"t": tenant})
        return bool(rows and rows[0]["n"])

    async def _request_ids(
        self, tenant: str, selector: Selector, sessions: list[str], users: list[str]
    ) -> list[str]:
        requests = list(selector.requests)
        sql = (
            "SELECT DISTINCT request_id FROM {db}.requests FINAL WHERE tenant = {t:String} AND"
            " (request_id IN {r:Array(String)} OR session_key IN {s:Array(String)}"
            " OR metadata['user'] IN {u:Array(String)})"
        ).replace("{db}", f"`{self.db.database}`")
        rows = await self.db.query(sql, {"t": tenant, "r": requests, "s": sessions, "u": users})
        return sorted({*requests, *(r["request_id"] for r in rows)})

    async def _delete_rows(self, tenant: str, ids: list[str], everything: bool) -> dict[str, Any]:
        """Delete, then count with FINAL: a table still holding a matching row fails the erasure."""
        tables = [t for t in schema.TABLES if t is not schema.ERASURES] if everything else ROW_TABLES
        where = "tenant = {t:String}" + ("" if everything else " AND request_id IN {ids:Array(String)}")
        params = {"t": tenant, "ids": ids}
        removed: dict[str, Any] = {}
        for table in tables:
            name = f"`{self.db.database}`.`{table.name}`"
            final = "" if table is schema.WORKFLOW_STATS_MINUTE else " FINAL"
            count = f"SELECT count() AS n FROM {name}{final} WHERE {where}"
            before = (await self.db.query(count, params))[0]["n"]
            if before:
                await self.db.execute(
                    f"ALTER TABLE {name} DELETE WHERE {where} SETTINGS mutations_sync = 2", params
                )
            left = (await self.db.query(count, params))[0]["n"]
            if left:
                raise RuntimeError(f"erasure left {left} rows in {table.name}")
            removed[table.name] = {"removed": before, "remaining": left}
        return removed

    def _kafka_note(self) -> dict[str, Any]:
        """Kafka cannot delete single records: raw events stay until their topic's retention."""
        now = dt.datetime.now(dt.UTC)
        until = {
            spec.name: (now + dt.timedelta(milliseconds=spec.retention_ms)).isoformat(timespec="seconds")
            for spec in _CAPTURE_TOPICS
            if spec.retention_ms > 0
        }
        return {
            "raw_events_remain_until": until,
            "note": "events of erased requests still in Kafka or a spool are dropped when they arrive; "
            "tenants with privacy.redact: capture never had raw text in Kafka",
        }
