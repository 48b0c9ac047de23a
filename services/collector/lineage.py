"""Step 5 of an erasure (services/collector/erasure.py): the adapters trained on erased data.

An adapter is tainted when the dataset it was trained on held an erased request (adapter rows
name their dataset), or when it was warm-started from a tainted adapter (its candidate names the
parent). What then happens is the tenant's ``privacy.on_erasure``:

- ``retrain`` (default): a workflow whose serving adapter is tainted is nominated again; its
  fresh dataset is exported from ClickHouse, where the erased rows no longer are, and the new
  version goes through the usual gate, shadow and canary steps over the tainted one; it is
  trained from scratch, never warm-started from a tainted version (services/trainer/erasures.py);
- ``retire``: the tainted adapter must stop serving at once. Rollbacks are signed operator
  commands the collector cannot issue, so the receipt marks it and `cumulus erase` rolls the
  workflow back (to the previous clean version, or live) with the operator's key.

A job still training on an affected dataset when the erasure stops waiting for it is rejected by
the trainer when it ends (its dataset's manifest gained an erasure record meanwhile); under
``retrain`` the workflow is nominated again all the same.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from cumulus.errors import CumulusError
from cumulus.logs import get_logger
from cumulus.rollout_states import WATCHED
from services.collector.learning import ADAPTER_STATES_SQL
from services.collector.store import ClickHouseStore

if TYPE_CHECKING:
    from services.collector.erasure import ErasureContext

log = get_logger("collector")
_RETIRE = "retire: `cumulus erase` rolls it back"
_IDLE = "none: it does not serve"
_ADAPTERS_SQL = f"""
SELECT a.workflow AS workflow, a.adapter_id AS adapter_id, a.dataset_id AS dataset_id,
       a.status AS status, c.parent_adapter_id AS parent, r.state AS state
FROM (SELECT * FROM {{db}}.adapters FINAL WHERE tenant = {{t:String}}) AS a
LEFT JOIN (SELECT * FROM {{db}}.candidates FINAL WHERE tenant = {{t:String}}) AS c
    ON c.candidate_id = a.candidate_id
LEFT JOIN ({ADAPTER_STATES_SQL}) AS r ON r.tenant = {{t:String}} AND r.adapter_id = a.adapter_id
"""


async def tainted(db: ClickHouseStore, tenant: str, datasets: list[str]) -> list[dict[str, Any]]:
    """The tenant's adapters trained on ``datasets`` or warm-started from one that was, with the
    dataset or parent that taints each."""
    rows = await db.query(_ADAPTERS_SQL.replace("{db}", f"`{db.database}`"), {"t": tenant})
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["dataset_id"] in datasets:
            found[row["adapter_id"]] = {**row, "tainted_by": f"dataset {row['dataset_id']}"}
    grew = True
    while grew:  # children of tainted parents, however deep the chain of warm starts
        grew = False
        for row in rows:
            if row["adapter_id"] not in found and row["parent"] in found:
                found[row["adapter_id"]] = {**row, "tainted_by": f"warm-started from {row['parent']}"}
                grew = True
    return sorted(found.values(), key=lambda r: (r["workflow"], r["adapter_id"]))


_TRAINING_SQL = """
SELECT adapter_id, dataset_id FROM {db}.adapters FINAL
WHERE tenant = {t:String} AND status = 'training' AND dataset_id IN {ds:Array(String)}
"""


async def wait_for_training(
    db: ClickHouseStore, tenant: str, datasets: list[str], wait_s: float, poll_s: float = 2.0
) -> list[dict[str, Any]]:
    """Wait (up to ``wait_s``) for the training jobs on ``datasets`` to end, so that what they make
    is tainted with the rest; each job waited for, how long, and whether it ended in time."""
    sql = _TRAINING_SQL.replace("{db}", f"`{db.database}`")
    training = await db.query(sql, {"t": tenant, "ds": datasets}) if datasets else []
    if not training:
        return []
    started = time.monotonic()
    running = training
    while running and time.monotonic() - started < wait_s:
        await asyncio.sleep(poll_s)
        running = await db.query(sql, {"t": tenant, "ds": datasets})
    still = {r["adapter_id"] for r in running}
    waited = round(time.monotonic() - started, 1)
    return [
        {"adapter_id": r["adapter_id"], "dataset_id": r["dataset_id"], "waited_s": waited,
         "ended": r["adapter_id"] not in still}
        for r in training
    ]  # fmt: skip


async def act_on_tainted(
    db: ClickHouseStore, context: ErasureContext, tenant: str, datasets: list[str]
) -> list[dict[str, Any]]:
    """Taint and apply the tenant's policy (see the module docstring); one entry per adapter."""
    policy = context.on_erasure(tenant)
    entries = []
    renominated: dict[str, str] = {}
    for adapter in await tainted(db, tenant, datasets):
        if adapter["status"] == "training":
            # The trainer sees its dataset rewritten when the job ends and publishes it REJECTED.
            action = "still training after the wait: the trainer rejects it when it ends"
            if policy == "retrain":
                action += "; " + await _retrain(context, tenant, adapter["workflow"], renominated)
        elif adapter["state"] not in WATCHED:
            action = _IDLE
        elif policy == "retire":
            action = _RETIRE
        else:
            action = await _retrain(context, tenant, adapter["workflow"], renominated)
        entry = _entry(adapter, adapter["tainted_by"], action)
        log.warning("erasure.adapter_tainted", tenant=tenant, **entry)
        entries.append(entry)
    return entries


async def retire_all(db: ClickHouseStore, tenant: str) -> list[dict[str, Any]]:
    """Every adapter of a tenant erased whole: the serving ones must stop (there is nothing left to
    retrain on), whatever ``privacy.on_erasure`` says."""
    rows = await db.query(_ADAPTERS_SQL.replace("{db}", f"`{db.database}`"), {"t": tenant})
    return [
        _entry(r, "the tenant's erasure (--all)", _RETIRE if r["state"] in WATCHED else _IDLE)
        for r in sorted(rows, key=lambda r: (r["workflow"], r["adapter_id"]))
    ]


def _entry(adapter: dict[str, Any], tainted_by: str, action: str) -> dict[str, Any]:
    """One adapter's line of the receipt."""
    return {
        "workflow": adapter["workflow"],
        "adapter_id": adapter["adapter_id"],
        "dataset_id": adapter["dataset_id"],
        "tainted_by": tainted_by,
        "state": adapter["state"] or adapter["status"] or "",
        "action": action,
    }


async def _retrain(context: ErasureContext, tenant: str, workflow: str, done: dict[str, str]) -> str:
    if workflow not in done:
        if context.renominate is None:
            done[workflow] = "retrain: no nominator here; nominate it with `cumulus nominate`"
        else:
            try:
                candidate = await context.renominate(tenant, workflow, "retrain after an erasure")
                done[workflow] = f"retrain: nominated again as {candidate}"
            except CumulusError as exc:
                done[workflow] = f"retrain: could not nominate it yet ({exc.message})"
    return done[workflow]
