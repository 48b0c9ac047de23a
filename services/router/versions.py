"""Every adapter each workflow has had, numbered in order: what `cumulus adapters history` shows
and what `cumulus rollout rollback WORKFLOW --to VERSION` may return to.

A version is an adapter the trainer finished for the workflow (ready, or rejected by its offline
gate), numbered v1, v2 ... in the order the router first saw them. The book keeps each one's
adapter event (dataset, base model, gate scores), its parent (what served the workflow when its
rollout began), and its latest rollout state with dates. It is rebuilt at start from the whole
adapters and rollouts topics, which are kept forever, so no version ever falls out of reach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cumulus.errors import InvalidArgument, NotFound
from cumulus.rollout_states import PROMOTED
from cumulus.v1 import events_pb2
from services.router.rollout import WorkflowKey

READY, REJECTED, SUPERSEDED = "ready", "rejected", "superseded"
_NUMBERED = re.compile(r"v?(\d+)")


@dataclass
class AdapterVersion:
    number: int
    event: events_pb2.AdapterEvent
    state: str
    """The latest rollout state; ``ready`` if it never rolled out, ``rejected`` if its gate failed,
    ``superseded`` once a later version was promoted over it."""
    reason: str = ""
    parent: str = ""
    """The adapter (or ``live``) serving the workflow when its rollout began."""
    updated_ns: int = 0

    @property
    def adapter_id(self) -> str:
        return self.event.adapter_id

    @property
    def servable(self) -> bool:
        """Passed its offline gate, so it may serve traffic again."""
        return self.event.status == events_pb2.ADAPTER_STATUS_READY and self.event.gate_passed

    def row(self) -> dict[str, Any]:
        """What `cumulus adapters history` prints for this version."""
        gate = {k: v for k, v in self.event.metrics.items() if k.startswith(("gate_", "gold_", "candidate_"))}
        return {
            "version": f"v{self.number}",
            "adapter_id": self.adapter_id,
            "state": self.state,
            "reason": self.reason or self.event.error,
            "parent": self.parent,
            "dataset_id": self.event.dataset_id,
            "base_model": self.event.base_model,
            "offline_score": self.event.offline_score,
            "gate_passed": self.event.gate_passed,
            "gate": gate,
            "trained_at": self.event.meta.occurred_at.ToJsonString()
            if self.event.meta.occurred_at.seconds
            else "",
            "updated_ns": self.updated_ns,
        }


class VersionBook:
    """The versions of every (tenant, workflow) (see the module docstring)."""

    def __init__(self) -> None:
        self._versions: dict[WorkflowKey, dict[str, AdapterVersion]] = {}

    def note_adapter(self, event: events_pb2.AdapterEvent) -> AdapterVersion | None:
        """Record a finished adapter (ready or rejected) once; progress events are no version."""
        if event.status not in (events_pb2.ADAPTER_STATUS_READY, events_pb2.ADAPTER_STATUS_REJECTED):
            return None
        versions = self._versions.setdefault(WorkflowKey.of(event.meta), {})
        known = versions.get(event.adapter_id)
        if known is not None:
            return known
        servable = event.status == events_pb2.ADAPTER_STATUS_READY and event.gate_passed
        version = AdapterVersion(
            number=len(versions) + 1,
            event=event,
            state=READY if servable else REJECTED,
            updated_ns=event.meta.occurred_at.ToNanoseconds(),
        )
        versions[event.adapter_id] = version
        return version

    def note_transition(
        self, key: WorkflowKey, adapter_id: str, state: str, reason: str, at_ns: int, parent: str = ""
    ) -> None:
        """A rollout of ``adapter_id`` moved to ``state``; ``parent`` is set by the first move."""
        version = self._versions.get(key, {}).get(adapter_id)
        if version is None:
            return  # an adapter from before the book (its event is older than the topic's start)
        version.state, version.reason, version.updated_ns = state, reason, at_ns
        if parent and not version.parent:
            version.parent = parent
        replaced = self._versions[key].get(parent)
        if state == PROMOTED and replaced is not None and replaced is not version:
            replaced.state, replaced.reason = SUPERSEDED, f"replaced by v{version.number} ({adapter_id})"
            replaced.updated_ns = at_ns

    def workflows(self) -> list[WorkflowKey]:
        """Every (tenant, workflow) that has a version."""
        return list(self._versions)

    def history(self, key: WorkflowKey) -> list[AdapterVersion]:
        return sorted(self._versions.get(key, {}).values(), key=lambda v: v.number)

    def find(self, key: WorkflowKey, adapter_id: str) -> AdapterVersion | None:
        return self._versions.get(key, {}).get(adapter_id)

    def resolve(self, key: WorkflowKey, ref: str) -> AdapterVersion:
        """The version ``ref`` names (an adapter id, ``v2`` or ``2``) among ``key``'s, servable.

        Raises NotFound naming the versions there are, or InvalidArgument when it was rejected."""
        versions = self._versions.get(key, {})
        found = versions.get(ref)
        numbered = _NUMBERED.fullmatch(ref)
        if found is None and numbered:
            found = next((v for v in versions.values() if v.number == int(numbered.group(1))), None)
        if found is None:
            known = ", ".join(f"v{v.number} ({v.adapter_id})" for v in self.history(key)) or "none"
            raise NotFound(
                f"{key.tenant}/{key.workflow} has no version {ref!r}; its versions: {known}",
                fix=f"`cumulus adapters history {key.workflow}` lists them",
            )
        if not found.servable:
            raise InvalidArgument(
                "to",
                f"v{found.number} ({found.adapter_id}) was rejected by its offline gate and never served",
            )
        return found
