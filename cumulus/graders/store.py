"""The judge's local record of grades and human feedback, for ``cumulus judge calibrate``.

A small SQLite file under the state dir (default ``<state_dir>/judge/judge.sqlite``): the judge
service writes it (every grade it computed, and every FeedbackEvent it consumed), the CLI reads
it. Rows are keyed by verdict id and feedback event id, so a redelivered record is an upsert, not
a duplicate. Answers themselves are not kept, only a digest of the candidate's (to match a
reviewer's correction). Rows older than ``retention_s`` are pruned on write.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cumulus.config import CumulusConfig
from cumulus.graders.calibration import CalibrationReport, calibrate, human_verdict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grades (
    verdict_id TEXT PRIMARY KEY, pair_id TEXT NOT NULL, request_id TEXT NOT NULL,
    workflow TEXT NOT NULL, adapter_id TEXT NOT NULL, grader TEXT NOT NULL, score REAL NOT NULL,
    passed INTEGER NOT NULL, consistent INTEGER, candidate_digest TEXT NOT NULL, graded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS grades_by_request ON grades (request_id);
CREATE TABLE IF NOT EXISTS feedback (
    event_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, workflow TEXT NOT NULL, score REAL,
    label TEXT NOT NULL, correction_digest TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_request ON feedback (request_id);
"""
# The latest feedback per request wins: a reviewer may change their mind.
_REVIEWED = """
SELECT g.grader, g.passed, f.score, f.label, f.correction_digest, g.candidate_digest
FROM grades g JOIN feedback f ON f.request_id = g.request_id
WHERE f.received_at = (SELECT MAX(received_at) FROM feedback WHERE request_id = g.request_id)
"""


def judge_store_path(config: CumulusConfig) -> Path:
    """The judge store: ``judge.store_path``, by default ``<state_dir>/judge/judge.sqlite``."""
    return config.judge.store_path or config.state_dir / "judge" / "judge.sqlite"


@dataclass(frozen=True)
class GradeRow:
    verdict_id: str
    pair_id: str
    request_id: str
    workflow: str
    adapter_id: str
    grader: str
    score: float
    passed: bool
    consistent: bool | None
    """The LLM judge's two orders agreed (pairwise grades only)."""
    candidate_digest: str


@dataclass(frozen=True)
class FeedbackRow:
    event_id: str
    request_id: str
    workflow: str
    score: float | None
    label: str
    correction_digest: str


class JudgeStore:
    """Grades and feedback in SQLite (WAL: the CLI reads while the service writes)."""

    def __init__(self, path: Path, retention_s: float = 30 * 24 * 3600) -> None:
        self.path = path
        self.retention_s = retention_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one transaction (committed on exit, rolled back on an exception)."""
        with self._lock, self._db:
            yield self._db

    def record(
        self,
        grades: Iterable[GradeRow],
        feedback: Iterable[FeedbackRow],
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Upsert grades and feedback, and run ``also``, in one transaction (durable when it returns)."""
        now = time.time()
        grade_rows = [(*_grade_values(g), now) for g in grades]
        feedback_rows = [
            (f.event_id, f.request_id, f.workflow, f.score, f.label, f.correction_digest, now)
            for f in feedback
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO grades VALUES (?,?,?,?,?,?,?,?,?,?,?)", grade_rows)
            self._db.executemany("INSERT OR REPLACE INTO feedback VALUES (?,?,?,?,?,?,?)", feedback_rows)
            if also is not None:
                also(self._db)
            cutoff = now - self.retention_s
            self._db.execute("DELETE FROM grades WHERE graded_at < ?", (cutoff,))
            self._db.execute("DELETE FROM feedback WHERE received_at < ?", (cutoff,))

    def counts(self) -> dict[str, int]:
        with self._lock:
            grades = self._db.execute("SELECT COUNT(*) FROM grades").fetchone()[0]
            feedback = self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        return {"grades": int(grades), "feedback": int(feedback)}

    def calibration(
        self, *, min_samples: int = 20, min_kappa: float = 0.4, min_consistency: float = 0.8
    ) -> CalibrationReport:
        """Each grader's agreement with reviewers, and the LLM judge's position consistency."""
        with self._lock:
            joined = self._db.execute(_REVIEWED).fetchall()
            consistency = [
                bool(c)
                for (c,) in self._db.execute("SELECT consistent FROM grades WHERE consistent IS NOT NULL")
            ]
            feedback = self._db.execute("SELECT score, label, correction_digest FROM feedback").fetchall()
        reviewed = list(_reviewed(joined))
        unusable = sum(human_verdict(score, label, digest, "") is None for score, label, digest in feedback)
        return calibrate(
            reviewed,
            consistency,
            feedback_events=len(feedback),
            unusable_feedback=unusable,
            min_samples=min_samples,
            min_kappa=min_kappa,
            min_consistency=min_consistency,
        )


def read_calibration(config: CumulusConfig) -> CalibrationReport | None:
    """The calibration report of the configured judge store with its thresholds; None: no store yet."""
    path = judge_store_path(config)
    if not path.exists():
        return None
    store = JudgeStore(path)
    try:
        return store.calibration(
            min_samples=config.judge.min_calibration_samples,
            min_kappa=config.judge.min_kappa,
            min_consistency=config.judge.min_position_consistency,
        )
    finally:
        store.close()


def _grade_values(g: GradeRow) -> tuple[object, ...]:
    consistent = None if g.consistent is None else int(g.consistent)
    return (
        g.verdict_id,
        g.pair_id,
        g.request_id,
        g.workflow,
        g.adapter_id,
        g.grader,
        g.score,
        int(g.passed),
        consistent,
        g.candidate_digest,
    )


def _reviewed(rows: list[tuple[object, ...]]) -> Iterator[tuple[str, bool, bool]]:
    for grader, passed, score, label, correction_digest, candidate_digest in rows:
        human = human_verdict(
            score if isinstance(score, float | int) else None,
            str(label),
            str(correction_digest),
            str(candidate_digest),
        )
        if human is not None:
            yield str(grader), bool(passed), human
