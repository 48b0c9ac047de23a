"""`cumulus demo`: the closed loop on the real stack, one stage after the other.

1. the stack: started with the demo profile's settings, or the one already running is used;
2. capture: a narrow application's requests, built from BFCL questions (ops.demo.narrow),
   through the gateway, answered by the live model (a new tenant per run, so each run's
   workflow starts from nothing);
3. the collector notices the workflow and nominates it; the trainer trains a LoRA for the small
   model and gates it offline; the router starts a rollout in shadow;
4. rollout: held-out questions keep coming; the judge grades every shadow pair; the router
   advances step by step to 100% (or rolls back);
5. a broken adapter (random weights) is pushed into the same loop and must be rolled back;
6. the report: ``<state_dir>/demo-report.json`` and a table.

The demo only sends traffic and watches Kafka: every decision is the services' own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

from cumulus.apikeys import ApiKeyStore
from cumulus.artifacts import ArtifactStore
from cumulus.config import CumulusConfig
from cumulus.errors import CumulusError
from cumulus.kafka.publisher import EventPublisher
from cumulus.v1 import events_pb2
from ops.demo import broken, report
from ops.demo.bfcl import BfclItem, load_items
from ops.demo.narrow import narrow_app
from ops.demo.observer import Observer
from ops.demo.params import parameter_counts
from ops.demo.profile import DemoProfile
from ops.demo.workload import Answer, WorkloadClient

FINAL = ("promoted", "rolled_back")
_OUTCOMES = (
    events_pb2.ADAPTER_STATUS_READY,
    events_pb2.ADAPTER_STATUS_REJECTED,
    events_pb2.ADAPTER_STATUS_FAILED,
)


class DemoFailed(CumulusError):
    """A stage did not finish; ``report`` says how far the loop got, for the report file."""

    def __init__(self, cause: CumulusError, report: dict[str, Any]) -> None:
        super().__init__(cause.message, fix=cause.fix)
        self.report = report


@dataclass
class DemoRun:
    config: CumulusConfig
    profile: DemoProfile
    say: Callable[[str], None] = print
    tenant: str = field(default_factory=lambda: f"demo-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}")
    items: dict[str, BfclItem] = field(default_factory=dict)
    """request_id -> the question it asked."""
    phases: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.time)
    workflow: str = ""

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        p = self.profile
        train, held_out = narrow_app(load_items("simple_python"), p.tools, p.capture_requests, p.held_out)
        key = ApiKeyStore(cfg.gateway.api_keys_file or cfg.state_dir / "api-keys.json").issue(self.tenant)
        client = WorkloadClient(
            f"{cfg.gateway.host}:{cfg.gateway.grpc_port}", key, concurrency=self.profile.concurrency
        )
        observer = Observer(cfg.kafka.bootstrap_servers, self.tenant, on_event=self._narrate)
        await observer.start()
        try:
            return await self._stages(client, observer, train, held_out)
        except CumulusError as exc:
            raise DemoFailed(exc, self._what_happened(observer, str(exc))) from exc
        finally:
            await observer.stop()

    async def _stages(
        self, client: WorkloadClient, observer: Observer, train: list[BfclItem], held_out: list[BfclItem]
    ) -> dict[str, Any]:
        seen, timeout = observer.seen, self.profile.phase_timeout_s
        self.say(f"[capture] {len(train)} BFCL questions through the gateway as tenant {self.tenant}")
        answers = await self._timed("capture", client.replay(train, "capture", self._counter(len(train))))
        failed = [a for a in answers if a.error]
        if len(failed) > len(answers) // 10:
            raise CumulusError(f"{len(failed)} of {len(answers)} requests failed, e.g. {failed[0].error}")
        self.workflow = self.workflow or next(a.workflow for a in answers if a.workflow)
        self.say(f"[capture] done: workflow {self.workflow}, {len(failed)} failed requests")

        self.say("[detect] waiting for the collector to nominate the workflow")
        await self._timed("detect", self._until(lambda: bool(seen.candidates), timeout, self._nudge()))
        detected_at = seen.candidates[0][0]

        self.say("[train] waiting for the trainer's adapter")
        await self._timed("train", self._until(lambda: self._adapter_outcome(seen) is not None, timeout))
        adapter = self._adapter_outcome(seen)
        assert adapter is not None
        if adapter.status != events_pb2.ADAPTER_STATUS_READY or not adapter.gate_passed:
            raise CumulusError(
                f"adapter {adapter.adapter_id} ended {events_pb2.AdapterStatus.Name(adapter.status)}: "
                f"offline score {adapter.offline_score:.2f} {adapter.error}",
                fix="see `cumulus logs trainer`; a bigger --profile trains longer",
            )

        self.say(f"[rollout] adapter {adapter.adapter_id} in shadow; held-out questions keep coming")
        good = adapter.adapter_id
        await self._timed(
            "rollout",
            self._traffic_until(client, held_out, "rollout", lambda: seen.final_state(good) in FINAL),
        )

        bad = f"ad-broken-{self.tenant.removeprefix('demo-')}"
        self.say(f"[broken] pushing {bad} (random weights) past the offline gate")
        await self._push_broken(bad)
        await self._timed(
            "broken", self._traffic_until(client, held_out, "broken", lambda: seen.final_state(bad) in FINAL)
        )
        return self._report(observer, good, bad, detected_at)

    # --- stages -----------------------------------------------------------------------------------
    async def _traffic_until(
        self, client: WorkloadClient, items: list[BfclItem], prefix: str, done: Callable[[], bool]
    ) -> None:
        deadline = time.monotonic() + self.profile.phase_timeout_s
        source = cycle(items)

        def stop() -> bool:
            return done() or time.monotonic() > deadline

        while not stop():
            batch = [next(source) for _ in range(self.profile.concurrency)]
            await client.replay(batch, prefix, self._remember, stop)
        if not done():
            raise CumulusError(f"{prefix}: no final rollout state after {self.profile.phase_timeout_s:.0f}s")

    async def _push_broken(self, adapter_id: str) -> None:
        cfg = self.config
        event = await asyncio.to_thread(
            broken.register_broken_adapter,
            ArtifactStore(cfg.artifacts_dir),
            tenant=self.tenant,
            workflow=self.workflow,
            adapter_id=adapter_id,
            base_model=cfg.triton.small_model,
            models_dir=Path(cfg.models_dir),
        )
        publisher = EventPublisher(
            cfg.kafka.bootstrap_servers, cfg.state_dir / "spool" / "demo", producer_name="demo"
        )
        await publisher.start()
        try:
            await broken.announce(publisher, event)
        finally:
            await publisher.close()

    async def _nudge(self) -> None:
        """When the running stack's detection thresholds exceed the demo's traffic, nominate by hand."""
        await asyncio.sleep(60)
        self.say(
            "[detect] no nomination after 60 s (the running stack's thresholds?): nominating via the API"
        )
        cfg = self.config.collector
        body = json.dumps({"tenant": self.tenant, "reason": "cumulus demo"}).encode()
        url = f"http://{cfg.host}:{cfg.health_port}/api/v1/workflows/{self.workflow}/nominate"
        request = urllib.request.Request(url, body, {"content-type": "application/json"})
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=120)

    # --- helpers ----------------------------------------------------------------------------------
    async def _until(self, done: Callable[[], bool], timeout_s: float, helper: Any = None) -> None:
        task = asyncio.ensure_future(helper) if helper is not None else None
        try:
            deadline = time.monotonic() + timeout_s
            while not done():
                if time.monotonic() > deadline:
                    raise CumulusError(f"gave up after {timeout_s:.0f}s", fix="see `cumulus status`")
                await asyncio.sleep(0.5)
        finally:
            if task:
                task.cancel()

    async def _timed(self, phase: str, work: Any) -> Any:
        start = time.monotonic()
        try:
            return await work
        finally:
            self.phases[phase] = round(time.monotonic() - start, 1)

    def _counter(self, total: int) -> Callable[[Answer], None]:
        def on_answer(answer: Answer) -> None:
            self._remember(answer)
            done = len(self.items)
            if done % 25 == 0 or done == total:
                rate = done / max(time.time() - self.t0, 1e-9)
                self.say(f"[capture] {done}/{total} answered ({rate:.2f} req/s)")

        return on_answer

    def _remember(self, answer: Answer) -> None:
        self.items[answer.request_id] = answer.item
        if answer.workflow and not self.workflow:
            self.workflow = answer.workflow

    @staticmethod
    def _student(seen: Any, adapter_id: str) -> str:
        """The base model the trainer chose for ``adapter_id`` (the ladder's pick)."""
        event = seen.adapters.get(adapter_id)
        return str(event.base_model) if event is not None else ""

    @staticmethod
    def _adapter_outcome(seen: Any) -> events_pb2.AdapterEvent | None:
        done = (
            events_pb2.ADAPTER_STATUS_READY,
            events_pb2.ADAPTER_STATUS_REJECTED,
            events_pb2.ADAPTER_STATUS_FAILED,
        )
        return next((a for a in seen.adapters.values() if a.status in done and a.candidate_id), None)

    def _narrate(self, topic: str, event: object) -> None:
        if isinstance(event, events_pb2.CandidateEvent):
            self.say(
                f"[detect] nominated by {event.nominated_by}: {event.reason} "
                f"({event.train_examples} train / {event.holdout_examples} holdout examples)"
            )
        elif isinstance(event, events_pb2.AdapterEvent):
            self._narrate_adapter(event)
        elif isinstance(event, events_pb2.RolloutEvent):
            n, rate = event.evidence.get("n"), event.evidence.get("pass_rate")
            numbers = f" ({n:.0f} verdicts, pass rate {rate:.2f})" if rate is not None and n else ""
            self.say(
                f"[rollout] {event.adapter_id}: {event.from_state or 'new'} -> {event.to_state} "
                f"at {event.weight:.0%}: {event.reason}{numbers}"
            )

    def _narrate_adapter(self, event: events_pb2.AdapterEvent) -> None:
        if event.status == events_pb2.ADAPTER_STATUS_TRAINING:
            loss = event.metrics.get("loss")
            self.say(
                f"[train] {event.adapter_id} {event.progress:.0%}" + (f" loss {loss:.3f}" if loss else "")
            )
        else:
            status = events_pb2.AdapterStatus.Name(event.status).removeprefix("ADAPTER_STATUS_")
            self.say(f"[train] {event.adapter_id} {status}, offline score {event.offline_score:.2f}")

    def _what_happened(self, observer: Observer, error: str) -> dict[str, Any]:
        """The partial report of a demo that stopped at a stage: the stage, the error, the events."""
        seen = observer.seen
        stages = ("capture", "detect", "train", "rollout", "broken")
        return {
            "error": error,
            "stopped_in": next((s for s in reversed(stages) if s in self.phases), "start"),
            "workflow": self.workflow,
            "tenant": self.tenant,
            "candidates": [c.candidate_id for _, c in seen.candidates],
            "adapters": {
                a.adapter_id: {
                    "status": events_pb2.AdapterStatus.Name(a.status),
                    "offline_score": a.offline_score,
                    "error": a.error,
                }
                for a in seen.adapters.values()
            },
            "rollout_steps": [
                {"adapter": e.adapter_id, "to": e.to_state, "weight": e.weight, "reason": e.reason}
                for _, e in seen.rollouts
            ],
            "phase_seconds": self.phases,
            "total_seconds": round(time.time() - self.t0, 1),
            "profile": self.profile.to_json(),
        }

    def _report(self, observer: Observer, good: str, bad: str, detected_at: float) -> dict[str, Any]:
        seen, cfg = observer.seen, self.config
        params = parameter_counts(cfg, good)
        promoted_at = seen.state_reached_at(good, "promoted")
        graded, pass_rate = report.verdict_stats(seen, good)
        body: dict[str, Any] = {
            "workflow": self.workflow,
            "tenant": self.tenant,
            "adapter_id": good,
            "student": self._student(seen, good),
            "shadow_pairs_graded": graded,
            "judge_pass_rate": pass_rate,
            **report.pair_stats(seen, good, self.items, params),
            "detection_to_promotion_seconds": round(promoted_at - detected_at, 1) if promoted_at else None,
            "rollout_final_state": seen.final_state(good),
            "rollout_steps": report.rollout_steps(seen, good, self.t0),
            "bad_adapter_id": bad,
            "bad_adapter_final_state": seen.final_state(bad),
            "bad_adapter_max_weight": max((e.weight for e in seen.rollout_states(bad)), default=0.0),
            "bad_adapter_steps": report.rollout_steps(seen, bad, self.t0),
            "parameters": params,
            "phase_seconds": self.phases,
            "total_seconds": round(time.time() - self.t0, 1),
            "profile": self.profile.to_json(),
        }
        body["targets_met"] = report.targets_met(body)
        return body
