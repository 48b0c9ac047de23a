"""What the trainer must not let through after an erasure (services/collector/erasure.py).

An erasure rewrites every dataset holding an erased request and appends a record to the
dataset's manifest (``erasures``). The trainer counts those records when a job is specified
(``JobSpec.dataset_erasures``) and writes the count into the adapter's manifest, so that it can
tell, without ClickHouse:

- **a job that trained on rows erased while it ran**: its dataset has more records when the job
  ends than when it began (or is gone: the tenant was erased whole). Its adapter is registered
  but published REJECTED with the erasure named, never READY: the erasure may have waited for it
  in vain (``privacy.erasure_training_wait_s``), and nothing else would stop it rolling out;
- **a tainted parent**: the version a candidate replaces may carry erased data in its weights
  (its dataset was rewritten after it was trained, or it was itself warm-started from such a
  version). A retrained version must not start from it, or the erased data lives on in v2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cumulus.artifacts import ArtifactStore
from cumulus.errors import ArtifactError


def erasure_records(dataset_dir: str | Path) -> list[dict[str, Any]] | None:
    """The dataset's erasure records, oldest first; None when the dataset is gone."""
    try:
        manifest = json.loads((Path(dataset_dir) / "manifest.json").read_text())
    except FileNotFoundError:
        return None
    return list(manifest.get("erasures", []))


def erased_while_training(dataset_id: str, dataset_dir: str, erasures_at_start: int) -> str:
    """Why an adapter trained on ``dataset_dir`` must not be served, or '' when nothing was erased
    from it since the job began."""
    records = erasure_records(dataset_dir)
    if records is None:
        return f"dataset {dataset_id} was erased while this adapter trained on it: it is not served"
    since = records[erasures_at_start:]
    if not since:
        return ""
    ids = ", ".join(str(r.get("erasure_id", "?")) for r in since)
    removed = sum(int(r.get("removed", 0)) for r in since)
    return (
        f"erasure {ids} removed {removed} rows of dataset {dataset_id} while this adapter trained on them: "
        "it is not served (the erasure's receipt says whether a version without them is trained)"
    )


def tainted_by_erasure(store: ArtifactStore, workflow: str, adapter_id: str) -> str:
    """Why adapter ``adapter_id`` (or a version it was warm-started from) holds erased data, or ''."""
    seen: set[str] = set()
    while adapter_id and adapter_id not in seen:
        seen.add(adapter_id)
        try:
            fields = store.verify("adapters", workflow, adapter_id).fields
        except ArtifactError as exc:
            return f"{adapter_id} cannot be checked ({exc.message})"
        dataset_id = str(fields.get("dataset_id", ""))
        records = erasure_records(store.path("datasets", workflow, dataset_id)) if dataset_id else []
        if records is None:
            return f"{adapter_id}'s dataset {dataset_id} is gone (erased, or expired)"
        if len(records) > int(fields.get("dataset_erasures", 0)):
            return f"{adapter_id}'s dataset {dataset_id} lost rows to an erasure after it was trained"
        adapter_id = str(fields.get("warm_started_from", ""))
    return ""
