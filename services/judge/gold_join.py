"""Joining shadow pairs with their request's feedback, durably: the input of gold verdicts.

A pair and the feedback on its request arrive on different topics, in either order, often minutes
apart. Both sides wait in the judge's SQLite store (services/judge/__main__.py opens it):

- ``gold``: the latest usable feedback per (tenant, request id); a later feedback replaces an
  earlier one (by its occurred_at), so a request is counted once whatever was sent twice;
- ``gold_pending``: pairs whose request had no feedback yet, until ``window_s`` after they came
  (at most ``max_pending``; past it the oldest stop waiting). Only what gold grading reads is
  kept: the chat messages are cleared.

``plan`` reads both tables and decides a batch's joins; ``write`` applies the plan inside the same
transaction as the batch's grades (JudgeStore.record), before the batch's offsets are committed.
So a restart loses no waiting pair and no feedback, and a redelivered batch joins the same pairs
again: its gold verdicts keep their ids (pair and grader), and consumers dedupe them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cumulus.graders.gold import Gold
from cumulus.graders.store import JudgeStore
from cumulus.v1 import events_pb2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gold (
    tenant TEXT NOT NULL, request_id TEXT NOT NULL, occurred_ns INTEGER NOT NULL, score REAL,
    label TEXT NOT NULL, correction TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
CREATE TABLE IF NOT EXISTS gold_pending (
    pair_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, request_id TEXT NOT NULL, pair BLOB NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS gold_pending_by_request ON gold_pending (tenant, request_id);
CREATE INDEX IF NOT EXISTS gold_pending_by_expiry ON gold_pending (expires_at);
"""
_UPSERT_GOLD = """
INSERT INTO gold VALUES (?,?,?,?,?,?,?)
ON CONFLICT (tenant, request_id) DO UPDATE SET
    occurred_ns = excluded.occurred_ns, score = excluded.score, label = excluded.label,
    correction = excluded.correction, received_at = excluded.received_at
WHERE excluded.occurred_ns >= gold.occurred_ns
"""
Key = tuple[str, str]
"""(tenant, request id): request ids are only unique within a tenant."""


@dataclass(frozen=True)
class Feedback:
    """One usable feedback: its gold and when it was given (the latest wins)."""

    key: Key
    occurred_ns: int
    score: float | None
    label: str
    correction: str

    @property
    def gold(self) -> Gold:
        gold = Gold.from_feedback(self.score, self.label, self.correction)
        assert gold is not None, "only usable feedback is kept"
        return gold

    @classmethod
    def of(cls, event: events_pb2.FeedbackEvent) -> Feedback | None:
        score = event.score if event.HasField("score") else None
        if Gold.from_feedback(score, event.label, event.correction) is None:
            return None
        key = (event.meta.tenant, event.request_id)
        return cls(key, event.meta.occurred_at.ToNanoseconds(), score, event.label, event.correction)


@dataclass
class GoldPlan:
    """What one batch joins (``ready``) and what the store must remember or forget."""

    ready: list[tuple[events_pb2.ShadowPair, Gold]] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    waiting: list[events_pb2.ShadowPair] = field(default_factory=list)
    joined: list[str] = field(default_factory=list)
    """Pair ids that waited in the store and are joined now."""


def _key(pair: events_pb2.ShadowPair) -> Key:
    return (pair.meta.tenant, pair.request_id)


class GoldJoin:
    """The two waiting rooms and the join (see the module docstring)."""

    def __init__(self, store: JudgeStore, *, window_s: float, max_pending: int) -> None:
        self.store = store
        self.window_s = window_s
        self.max_pending = max_pending
        with store.transaction() as db:
            db.executescript(_SCHEMA)

    def plan(
        self, pairs: Sequence[events_pb2.ShadowPair], feedback: Sequence[events_pb2.FeedbackEvent]
    ) -> GoldPlan:
        """Join a batch's pairs and feedback with each other and with what waits in the store."""
        plan = GoldPlan()
        latest: dict[Key, Feedback] = {}
        for event in feedback:
            usable = Feedback.of(event)
            if usable is not None and (
                usable.key not in latest or usable.occurred_ns >= latest[usable.key].occurred_ns
            ):
                latest[usable.key] = usable
        plan.feedback = list(latest.values())
        with self.store.transaction() as db:
            known = self._stored_gold(db, {_key(p) for p in pairs} | set(latest))
            for key, new in latest.items():
                if key not in known or new.occurred_ns >= known[key].occurred_ns:
                    known[key] = new
            in_batch = {p.pair_id for p in pairs}
            for pair in pairs:
                gold = known.get(_key(pair))
                if gold is not None:
                    plan.ready.append((pair, gold.gold))
                elif self.window_s > 0 and self.max_pending > 0:
                    plan.waiting.append(pair)
            for key in latest:
                for pair_id, blob in db.execute(
                    "SELECT pair_id, pair FROM gold_pending WHERE tenant = ? AND request_id = ?", key
                ):
                    if pair_id not in in_batch:
                        plan.ready.append((events_pb2.ShadowPair.FromString(blob), known[key].gold))
                        plan.joined.append(pair_id)
        return plan

    def write(self, db: sqlite3.Connection, plan: GoldPlan, now: float | None = None) -> int:
        """Apply ``plan`` in the caller's transaction; returns how many pairs stopped waiting unjoined."""
        now = time.time() if now is None else now
        db.executemany(
            _UPSERT_GOLD,
            [(*f.key, f.occurred_ns, f.score, f.label, f.correction, now) for f in plan.feedback],
        )
        db.executemany("DELETE FROM gold_pending WHERE pair_id = ?", [(i,) for i in plan.joined])
        db.executemany(
            "INSERT OR REPLACE INTO gold_pending VALUES (?,?,?,?,?)",
            [(*_waiting_row(pair), now + self.window_s) for pair in plan.waiting],
        )
        expired = db.execute("DELETE FROM gold_pending WHERE expires_at < ?", (now,)).rowcount
        overflow = db.execute(
            "DELETE FROM gold_pending WHERE pair_id IN "
            "(SELECT pair_id FROM gold_pending ORDER BY expires_at DESC LIMIT -1 OFFSET ?)",
            (self.max_pending,),
        ).rowcount
        db.execute("DELETE FROM gold WHERE received_at < ?", (now - self.store.retention_s,))
        return int(expired) + int(overflow)

    def waiting(self) -> int:
        with self.store.transaction() as db:
            return int(db.execute("SELECT COUNT(*) FROM gold_pending").fetchone()[0])

    @staticmethod
    def _stored_gold(db: sqlite3.Connection, keys: set[Key]) -> dict[Key, Feedback]:
        found: dict[Key, Feedback] = {}
        for key in keys:
            row = db.execute(
                "SELECT occurred_ns, score, label, correction FROM gold WHERE tenant = ? AND request_id = ?",
                key,
            ).fetchone()
            if row is not None:
                found[key] = Feedback(key, int(row[0]), row[1], str(row[2]), str(row[3]))
        return found


def _waiting_row(pair: events_pb2.ShadowPair) -> tuple[str, str, str, bytes]:
    slim = events_pb2.ShadowPair()
    slim.CopyFrom(pair)
    del slim.messages[:]  # gold grading never reads the chat; keep less of it on disk
    return (slim.pair_id, slim.meta.tenant, slim.request_id, slim.SerializeToString())
