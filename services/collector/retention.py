"""Retention: every store forgets on its own schedule (``privacy.retention``, per tenant
``privacy.tenants.<tenant>.retention_days``).

- ClickHouse: each table holding captured data gets a TTL clause, one expression for every
  tenant (``occurred_at + toIntervalDay(multiIf(tenant = 'a', 7, 90))``), set at every start so
  a changed config takes effect; ClickHouse drops expired rows as it merges parts (at the latest
  ``merge_with_ttl_timeout`` after they expire). Adapters, rollouts, candidates and erasures are
  kept: they are the system's history, and hold no captured text.
- Artifact store (``expire_artifacts``, every hour): a dataset older than ``datasets_days`` that
  no adapter in use was trained on, and an adapter rejected, failed or rolled back longer than
  ``retired_adapters_days`` ago, are removed.
- Kafka: the capture topics' own ``retention.ms`` (cumulus/kafka/topics.py), set when they are
  created, here and in docker-compose alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from typing import Any

from cumulus.artifacts import ArtifactStore
from cumulus.config.privacy import PrivacyConfig
from cumulus.logs import get_logger
from cumulus.rollout_states import WATCHED
from services.collector.clickhouse import schema
from services.collector.learning import ADAPTER_STATES_SQL
from services.collector.rows import aware
from services.collector.store import ClickHouseStore

log = get_logger("collector")
TENANT_TABLES = ("requests", "feedback", "verdicts", "audit_answers")
"""Tables whose retention a tenant's ``retention_days`` overrides."""
_RETIRED = ("rejected", "failed")
_ARTIFACT_STATES_SQL = f"""
SELECT a.workflow AS workflow, a.adapter_id AS adapter_id, a.dataset_id AS dataset_id,
       a.status AS status, r.state AS state, a.updated_at AS updated_at
FROM (SELECT * FROM {{db}}.adapters FINAL) AS a
LEFT JOIN ({ADAPTER_STATES_SQL}) AS r ON r.tenant = a.tenant AND r.adapter_id = a.adapter_id
"""


def _literal(text: str) -> str:
    """A ClickHouse string literal (tenant names are whatever API keys say)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ttl_expression(table: str, privacy: PrivacyConfig) -> str | None:
    """The TTL of ``table`` (None: kept for good)."""
    days = privacy.retention.days(table)
    if days is None:
        return None
    own = {t: p.retention_days for t, p in sorted(privacy.tenants.items()) if p.retention_days}
    if table not in TENANT_TABLES or not own:
        return f"occurred_at + toIntervalDay({days})"
    cases = ", ".join(f"tenant = {_literal(t)}, {d}" for t, d in own.items())
    return f"occurred_at + toIntervalDay(multiIf({cases}, {days}))"


async def apply_ttls(db: ClickHouseStore, privacy: PrivacyConfig) -> list[str]:
    """Set every table's TTL (cheaply: existing parts get it as they merge); the statements run."""
    statements = []
    for table in schema.TABLES:
        expression = ttl_expression(table.name, privacy)
        if expression is not None:
            statements.append(
                f"ALTER TABLE `{db.database}`.`{table.name}` MODIFY TTL {expression}"
                " SETTINGS materialize_ttl_after_modify = 0"
            )
    for statement in statements:
        await db.execute(statement)
    return statements


async def expire_artifacts(
    db: ClickHouseStore, store: ArtifactStore, privacy: PrivacyConfig, now: dt.datetime | None = None
) -> dict[str, list[str]]:
    """Remove expired datasets and retired adapters (see the module docstring); what was removed."""
    now = now or dt.datetime.now(dt.UTC)
    rows = await db.query(_ARTIFACT_STATES_SQL.replace("{db}", f"`{db.database}`"))
    in_use = {r["dataset_id"] for r in rows if r["state"] in WATCHED or r["status"] == "training"}
    retired_before = now - dt.timedelta(days=privacy.retention.retired_adapters_days)
    retired = [
        r
        for r in rows
        if ((r["state"] or "") == "rolled_back" or (not r["state"] and r["status"] in _RETIRED))
        and aware(r["updated_at"]) < retired_before
    ]
    datasets_before = now - dt.timedelta(days=privacy.retention.datasets_days)
    return await asyncio.to_thread(_remove, store, retired, in_use, datasets_before)


def _remove(
    store: ArtifactStore, retired: list[dict[str, Any]], in_use: set[str], datasets_before: dt.datetime
) -> dict[str, list[str]]:
    removed: dict[str, list[str]] = {"adapters": [], "datasets": []}
    for row in retired:
        if store.path("adapters", row["workflow"], row["adapter_id"]).is_dir():
            store.remove("adapters", row["workflow"], row["adapter_id"])
            removed["adapters"].append(row["adapter_id"])
    root = store.root / "datasets"
    for manifest_path in sorted(root.glob("*/*/manifest.json")) if root.is_dir() else []:
        manifest = json.loads(manifest_path.read_text())
        created = dt.datetime.fromisoformat(manifest["created_at"])
        if manifest["id"] not in in_use and aware(created) < datasets_before:
            store.remove("datasets", manifest["workflow"], manifest["id"])
            removed["datasets"].append(manifest["id"])
    if removed["adapters"] or removed["datasets"]:
        log.info("retention.expired", adapters=len(removed["adapters"]), datasets=len(removed["datasets"]))
    return removed


async def expire_every(
    interval_s: float,
    db: ClickHouseStore,
    store: ArtifactStore,
    privacy: PrivacyConfig,
    stopping: asyncio.Event,
) -> None:
    """``expire_artifacts`` now and every ``interval_s`` until ``stopping``; a failed pass is logged
    and tried again at the next one (retention is never urgent to the second)."""
    while not stopping.is_set():
        try:
            await expire_artifacts(db, store, privacy)
        except Exception:
            log.exception("retention.failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
