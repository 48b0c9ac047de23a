"""The judge's consume -> grade -> publish -> commit loop over cumulus.shadow.v1 and cumulus.feedback.v1.

An aiokafka consumer with manual commits rather than a Faust agent: the offsets of a batch are
committed only after Kafka has acknowledged every verdict and dead letter of that batch and the
grades are in the calibration store. Faust acks an event when its agent moves on, whether or not
what the agent published has been acknowledged, and an agent that raises still advances its
offset (faust-streaming #527), so neither guarantee would hold there. A crash between publish
and commit redelivers the batch; its verdicts come out again with the same ids (harmless).

A batch is up to ``batch_max`` records or what arrived within ``batch_wait_ms``. Records that
cannot be decoded or graded go to cumulus.kafka.deadletter.v1 and never stop the loop. When the LLM
judge's model is unreachable (NotReady) the batch is retried, not dead-lettered: the pairs are
fine, the judge is not. SIGTERM lets the batch in hand finish (or leaves it uncommitted).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter as Metric
from prometheus_client import Histogram

from cumulus.config import JudgeConfig
from cumulus.errors import EventDecodeError, NotReady
from cumulus.graders import GraderSuite
from cumulus.graders.gold import grade_against_gold
from cumulus.graders.store import FeedbackRow, GradeRow, JudgeStore
from cumulus.kafka import topics
from cumulus.kafka.codec import decode_as
from cumulus.kafka.deadletter import dead_letter
from cumulus.kafka.publisher import EventPublisher
from cumulus.kafka.runtime import Progress, Subscription, backoff_s, stopped_within
from cumulus.logs import get_logger
from cumulus.v1 import events_pb2
from services.judge import pairs
from services.judge.gold_join import GoldJoin, GoldPlan
from services.judge.pairs import Graded

log = get_logger("judge")
CONSUMER = "judge"

PAIRS = Metric("cumulus_judge_pairs", "Shadow pairs by outcome.", ["outcome"])
VERDICTS = Metric("cumulus_judge_verdicts", "Verdicts published.", ["grader", "passed"])
GOLD = Metric("cumulus_judge_gold", "Shadow pairs by how their gold join ended.", ["outcome"])
BATCH_SECONDS = Histogram("cumulus_judge_batch_seconds", "Time to grade one batch.")


def subscription(judge: JudgeConfig) -> Subscription:
    """The judge's input: shadow pairs to grade and feedback to calibrate with."""
    return Subscription(
        topics=(topics.SHADOW.name, topics.FEEDBACK.name),
        group_id=judge.group_id,
        client_id=CONSUMER,
        max_records=judge.batch_max,
        fetch_timeout_ms=judge.batch_wait_ms,
        outputs="the verdicts",
    )


class JudgeHandler:
    """Grades one batch at a time (see the module docstring); a ``BatchHandler`` of the runtime."""

    def __init__(
        self, publisher: EventPublisher, suite: GraderSuite, store: JudgeStore, gold: GoldJoin | None = None
    ) -> None:
        self.publisher = publisher
        self.suite = suite
        self.store = store
        self.gold = gold
        """Joins pairs with their request's feedback for gold verdicts; None: agreement only."""
        self.progress = Progress()
        """What the batch is stuck on (the judge model, Kafka), None while it makes progress."""

    async def handle(self, records: Sequence[Any], stopping: asyncio.Event) -> bool:
        """Grade, publish and record one batch; False when stopping before it was graded."""
        started = time.monotonic()
        shadow, feedback, feedback_events = [], [], []
        for record in records:
            try:
                if record.topic == topics.FEEDBACK.name:
                    event = decode_as(events_pb2.FeedbackEvent, record.value)
                    feedback.append(pairs.feedback_row(event))
                    feedback_events.append(event)
                else:
                    pair = decode_as(events_pb2.ShadowPair, record.value, topic=record.topic)
                    pairs.check_pair(pair)
                    shadow.append((record, pair))
            except EventDecodeError as exc:
                self._dead_letter(record, str(exc))
        graded = await self._grade(shadow, stopping)
        if graded is None:
            return False
        for item in graded:
            self.publisher.publish(topics.VERDICTS, item.verdict())
            VERDICTS.labels(item.final.grader, str(item.final.passed).lower()).inc()
        plan, gold_verdicts = await asyncio.to_thread(
            self._gold_verdicts, [item.pair for item in graded], feedback_events
        )
        for verdict in gold_verdicts:
            self.publisher.publish(topics.VERDICTS, verdict)
            VERDICTS.labels(f"gold/{verdict.grader}", str(verdict.passed).lower()).inc()
        rows = [row for item in graded for row in item.rows()]
        await asyncio.to_thread(self._record, rows, feedback, plan)
        self._log_batch(graded, feedback, time.monotonic() - started)
        return True

    def _gold_verdicts(
        self, graded: list[events_pb2.ShadowPair], feedback: list[events_pb2.FeedbackEvent]
    ) -> tuple[GoldPlan | None, list[events_pb2.Verdict]]:
        """Join the batch with waiting pairs and feedback; grade the joined pairs against their gold."""
        if self.gold is None:
            return None, []
        plan = self.gold.plan(graded, feedback)
        verdicts = []
        for pair, gold in plan.ready:
            try:
                (grade,) = grade_against_gold(self.suite, [pairs.gold_case(pair, gold)])
            except Exception:  # a grader crash on one pair: no gold verdict for it, the rest go on
                log.exception("gold.grader_crashed", workflow=pair.meta.workflow, pair=pair.pair_id)
                GOLD.labels("crashed").inc()
                continue
            if grade is None:
                GOLD.labels("unknown").inc()  # feedback refuted live, candidate said something else
                continue
            GOLD.labels("graded").inc()
            verdicts.append(pairs.gold_verdict(pair, grade))
        GOLD.labels("waiting").inc(len(plan.waiting))
        if plan.ready or plan.feedback:
            log.info(
                "gold.joined",
                feedback=len(plan.feedback),
                joined=len(plan.ready),
                verdicts=len(verdicts),
                waiting=len(plan.waiting),
                adapters=sorted({v.adapter_id for v in verdicts}),
            )
        return plan, verdicts

    def _record(self, rows: list[GradeRow], feedback: list[FeedbackRow], plan: GoldPlan | None) -> None:
        gold, expired = self.gold, 0

        def write_plan(db: sqlite3.Connection) -> None:
            nonlocal expired
            if gold is not None and plan is not None:
                expired = gold.write(db, plan)

        self.store.record(rows, feedback, write_plan)
        if expired:
            GOLD.labels("expired").inc(expired)
            log.info("gold.expired", pairs=expired, reason="no feedback within judge.gold_window_s")

    async def _grade(
        self, shadow: list[tuple[Any, events_pb2.ShadowPair]], stopping: asyncio.Event
    ) -> list[Graded] | None:
        """Grade the pairs; a pair a grader crashes on is dead-lettered alone, the rest go on."""
        gradable = []
        for record, pair in shadow:
            if pairs.live_failed(pair):
                PAIRS.labels("skipped").inc()
                log.warning(
                    "pair.skipped",
                    workflow=pair.meta.workflow,
                    adapter=pair.adapter_id,
                    pair=pair.pair_id,
                    reason="live output failed: no reference",
                )
            else:
                gradable.append((record, pair))
        attempt = 0
        while True:
            try:
                return await self._grade_all(gradable)
            except NotReady as exc:
                self.progress.waiting_for = str(exc)
                log.warning("judge.waiting", reason=str(exc), attempt=attempt + 1)
                if await stopped_within(stopping, backoff_s(attempt)):
                    return None
                attempt += 1

    async def _grade_all(self, gradable: list[tuple[Any, events_pb2.ShadowPair]]) -> list[Graded]:
        try:
            graded = await self._grade_pairs([pair for _, pair in gradable])
        except NotReady:
            raise
        except Exception:  # one bad pair must not sink its batch: find it by grading one at a time
            graded = []
            for record, pair in gradable:
                try:
                    graded.extend(await self._grade_pairs([pair]))
                except NotReady:
                    raise
                except Exception as exc:
                    log.exception(
                        "pair.grader_crashed",
                        workflow=pair.meta.workflow,
                        adapter=pair.adapter_id,
                        pair=pair.pair_id,
                    )
                    self._dead_letter(record, f"grader crashed: {type(exc).__name__}: {exc}")
        self.progress.waiting_for = None
        PAIRS.labels("graded").inc(len(graded))
        return graded

    async def _grade_pairs(self, batch: list[events_pb2.ShadowPair]) -> list[Graded]:
        failed = [p for p in batch if pairs.candidate_failed(p)]
        ok = [p for p in batch if not pairs.candidate_failed(p)]
        outcomes = await self.suite.grade([pairs.grade_case(p) for p in ok])
        graded = [Graded(p, o.grades) for p, o in zip(ok, outcomes, strict=True)]
        for pair in failed:
            grader = self.suite.chosen_grader(pairs.grade_case(pair))
            graded.append(Graded(pair, (pairs.candidate_error_grade(grader, pair),)))
        return graded

    def _dead_letter(self, record: Any, reason: str) -> None:
        PAIRS.labels("dead_lettered").inc()
        log.warning(
            "record.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason[:300],
        )
        self.publisher.publish(
            topics.DEADLETTER, dead_letter(record, consumer=CONSUMER, producer=pairs.PRODUCER, reason=reason)
        )

    def _log_batch(self, graded: list[Graded], feedback: list[FeedbackRow], took_s: float) -> None:
        per_target: Counter[tuple[str, str, str]] = Counter()
        passed: Counter[tuple[str, str, str]] = Counter()
        for item in graded:
            key = (item.pair.meta.workflow, item.pair.adapter_id, item.final.grader)
            per_target[key] += 1
            passed[key] += item.final.passed
            log.debug(
                "verdict",
                workflow=key[0],
                adapter=key[1],
                pair=item.pair.pair_id,
                grader=key[2],
                score=item.final.score,
                passed=item.final.passed,
            )
        for (workflow, adapter, grader), count in per_target.items():
            log.info(
                "verdicts.published",
                workflow=workflow,
                adapter=adapter,
                grader=grader,
                pairs=count,
                passed=passed[(workflow, adapter, grader)],
            )
        if feedback:
            log.info("feedback.recorded", events=len(feedback))
        BATCH_SECONDS.observe(took_s)
