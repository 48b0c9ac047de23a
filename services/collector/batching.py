"""Per-partition batching and the pending-batch note kept in Kafka's committed-offset metadata.

Pure bookkeeping, no I/O: the pipeline (pipeline.py) feeds fetched records in, asks which
partition's batch is due and takes it out. Kept apart so the cutting rules, which carry the
exactly-once argument, are unit-tested on their own (tests/unit/collector/test_batching.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING_PREFIX = "cumulus.pending-last="
"""Committed-offset metadata ``cumulus.pending-last=<offset>``: a batch from the committed offset
to ``<offset>`` may have been inserted; its owner must insert exactly that batch again."""


def pending_note(last_offset: int) -> str:
    return f"{PENDING_PREFIX}{last_offset}"


def parse_pending_note(metadata: str | None) -> int | None:
    """The last offset a pending note names, or None when the metadata is not one."""
    if not metadata or not metadata.startswith(PENDING_PREFIX):
        return None
    try:
        return int(metadata[len(PENDING_PREFIX) :])
    except ValueError:
        return None


@dataclass(frozen=True)
class Replay:
    """A batch that must be re-formed exactly: offsets ``first`` to ``last`` of its partition."""

    first: int
    last: int


@dataclass
class PartitionBuffer:
    """Records of one partition fetched but not yet inserted, oldest first."""

    records: list[Any] = field(default_factory=list)
    since: float = 0.0
    """Monotonic time the oldest buffered record was fetched."""
    ready: bool = False
    """False until the partition's pending note was read on assignment: nothing may be cut before."""
    replay: Replay | None = None

    def add(self, records: list[Any], now: float) -> None:
        if not self.records:
            self.since = now
        self.records.extend(records)

    def check_replay(self) -> str | None:
        """Drop a replay the buffered records can no longer honour; returns why, or None."""
        if self.replay is None or not self.records:
            return None
        first = self.records[0].offset
        if first != self.replay.first:
            # The records before it are gone (retention) or the position was reset: the note no
            # longer describes what we read, so batches are formed freshly from here.
            why = f"first fetched offset {first} is not the pending batch's first {self.replay.first}"
            self.replay = None
            return why
        return None

    def due(self, now: float, batch_rows: int, max_wait_s: float) -> bool:
        """Whether a batch should be cut now."""
        if not self.ready or not self.records:
            return False
        if self.replay is not None:
            # All of the pending batch must be here: it is in Kafka already, so it comes quickly.
            return bool(self.records[-1].offset >= self.replay.last)
        return len(self.records) >= batch_rows or now - self.since >= max_wait_s

    def cut(self, max_rows: int) -> list[Any]:
        """Take the next batch out of the buffer (call only when ``due``)."""
        if self.replay is not None:
            count = next(
                (i for i, record in enumerate(self.records) if record.offset > self.replay.last),
                len(self.records),
            )
            self.replay = None
        else:
            count = min(len(self.records), max_rows)
        batch, self.records = self.records[:count], self.records[count:]
        # ``since`` stays: what is left was fetched no earlier, so its wait is never underestimated.
        return batch
