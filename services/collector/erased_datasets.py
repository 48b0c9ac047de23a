"""Step 4 of an erasure (services/collector/erasure.py): the tenant's datasets without the erased
requests.

Every line of a dataset names its request (export.py writes ``request_id``), which is the lineage
an erasure follows. A dataset holding any erased request is rewritten whole and atomically
(cumulus.artifacts: ``rewrite``) without those lines; its manifest keeps its fields, updates its
example counts and appends an ``erasures`` record (id, time, lines removed). ``--all`` removes the
tenant's datasets. The ids of the datasets touched are returned with what was done to each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from cumulus.artifacts import ArtifactStore, Manifest, read_jsonl
from cumulus.errors import ArtifactError
from cumulus.logs import get_logger

log = get_logger("collector")
SPLITS = ("train.jsonl", "holdout.jsonl")


async def rewrite_datasets(
    store: ArtifactStore, tenant: str, request_ids: set[str], everything: bool, erasure_id: str
) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_rewrite_all, store, tenant, request_ids, everything, erasure_id)


def _rewrite_all(
    store: ArtifactStore, tenant: str, request_ids: set[str], everything: bool, erasure_id: str
) -> list[dict[str, Any]]:
    touched: list[dict[str, Any]] = []
    root = store.root / "datasets"
    for folder in sorted(root.glob("*/*")) if root.is_dir() else []:
        if folder.name.startswith(".") or not (folder / "manifest.json").is_file():
            continue
        manifest = Manifest.from_json(json.loads((folder / "manifest.json").read_text()))
        if manifest.fields.get("tenant") != tenant:
            continue
        workflow, dataset_id = manifest.workflow, manifest.id
        if everything:
            store.remove("datasets", workflow, dataset_id)
            touched.append({"dataset_id": dataset_id, "workflow": workflow, "removed": "the whole dataset"})
            continue
        lines = {split: read_jsonl(folder / split) for split in SPLITS if (folder / split).is_file()}
        kept = {
            split: [r for r in rows if r.get("request_id") not in request_ids]
            for split, rows in lines.items()
        }
        removed = sum(len(rows) for rows in lines.values()) - sum(len(rows) for rows in kept.values())
        if removed:
            _rewrite(store, manifest, kept, erasure_id, removed)
            remaining = {split.split(".")[0]: len(rows) for split, rows in kept.items()}
            touched.append(
                {"dataset_id": dataset_id, "workflow": workflow, "removed": removed, "remaining": remaining}
            )
    return touched


def _rewrite(
    store: ArtifactStore,
    manifest: Manifest,
    kept: dict[str, list[dict[str, Any]]],
    erasure_id: str,
    removed: int,
) -> None:
    fields = dict(manifest.fields)
    fields["examples"] = {split.split(".")[0]: len(rows) for split, rows in kept.items()}
    fields["erasures"] = [
        *fields.get("erasures", []),
        {
            "erasure_id": erasure_id,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "removed": removed,
        },
    ]
    try:
        with store.rewrite("datasets", manifest.workflow, manifest.id) as writer:
            for split, rows in kept.items():
                writer.write_lines(split, (json.dumps(r, ensure_ascii=False, sort_keys=True) for r in rows))
            writer.commit(fields)
    except ArtifactError:
        log.exception("erasure.dataset_rewrite_failed", dataset=manifest.id, workflow=manifest.workflow)
        raise
