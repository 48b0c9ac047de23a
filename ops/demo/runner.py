"""`cumulus demo`: the closed loop on the real stack, one stage after the other.

1. the stack: started with the demo profile's settings, or the one already running is used;
2. capture: one workload's requests (ops.demo.workloads) through the gateway, answered by the
   live model, with the workload's users' feedback on a share of them (a new tenant per run, so
   each run's workflow starts from nothing);
3. the collector notices the workflow and nominates it; the trainer picks a student, trains a
   LoRA and gates it offline (on gold where feedback gave some); the router starts a rollout;
4. rollout: held-out requests (and their feedback) keep coming; the judge grades every shadow
   pair, against gold where feedback exists; the router advances step by step to 100% (or rolls
   back). A workload that expects nothing to ship ends at the offline gate's rejection instead,
   with the reason the services gave (the gate's numbers, the retry the collector plans);
5. for the BFCL workload, a broken adapter (random weights) is pushed into the same loop and
   must be rolled back;
6. with ``--drift`` (BFCL), the application's traffic then changes under the promoted adapter:
   drift, rollback, fresh data, the next version (ops/demo/drift_stage.py);
7. the report: ``<state_dir>/demo-report[-WORKLOAD].json`` and a table.

The demo only sends traffic and feedback, and watches Kafka and the collector's read API: every
decision is the services' own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

from cumulus.apikeys import ApiKeyStore
from cumulus.artifacts import ArtifactStore
from cumulus.config import CumulusConfig
from cumulus.errors import CumulusError
from cumulus.kafka import security
from cumulus.kafka.publisher import EventPublisher
from cumulus.v1 import events_pb2
from ops.demo import broken, collector_api, summary
from ops.demo.client import Answer, WorkloadClient
from ops.demo.drift_stage import run_drift
from ops.demo.narration import Narrator
from ops.demo.observer import Observer
from ops.demo.profile import DemoProfile
from ops.demo.workloads.base import Workload


class DemoFailed(CumulusError):
    """A stage did not finish; ``report`` says how far the loop got, for the report file."""

    def __init__(self, cause: CumulusError, report: dict[str, Any]) -> None:
        super().__init__(cause.message, fix=cause.fix)
        self.report = report


@dataclass
class DemoRun:
    config: CumulusConfig
    profile: DemoProfile
    workload: Workload
    say: Callable[[str], None] = print
    tenant: str = ""
    """Default: a new one per run, ``demo-<workload>-<UTC time>``, so each run starts from nothing."""
    items: dict[str, Any] = field(default_factory=dict)
    """request_id -> the workload item it asked."""
    phases: dict[str, float] = field(default_factory=dict)
    learned: dict[str, Any] = field(default_factory=dict)
    """What the collector's read API said about the workflow (learning curve, sufficiency)."""
    t0: float = field(default_factory=time.time)
    workflow: str = ""
    drift: bool = False
    """After promotion, run the drift stage (ops/demo/drift_stage.py; the BFCL workload only)."""
    api_key: str = ""

    def __post_init__(self) -> None:
        self.tenant = self.tenant or f"demo-{self.workload.name}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"

    def client_for(self, workload: Workload) -> WorkloadClient:
        """A client sending ``workload``'s requests as this run's tenant."""
        cfg = self.config
        target = f"{cfg.gateway.host}:{cfg.gateway.grpc_port}"
        return WorkloadClient(
            target, self.api_key, workload, concurrency=self.profile.concurrency, tls=cfg.gateway_client_tls
        )

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        p = self.profile
        train, held_out = self.workload.items(p.capture_requests, p.held_out)
        self.api_key = ApiKeyStore(cfg.api_keys_path).issue(self.tenant)
        client = self.client_for(self.workload)
        observer = Observer(cfg.kafka.bootstrap_servers, self.tenant, on_event=Narrator(self.say))
        await observer.start()
        try:
            return await self._stages(client, observer, train, held_out)
        except CumulusError as exc:
            raise DemoFailed(exc, summary.partial(self, observer, str(exc))) from exc
        finally:
            await observer.stop()

    async def _stages(
        self, client: WorkloadClient, observer: Observer, train: list[Any], held_out: list[Any]
    ) -> dict[str, Any]:
        seen, timeout, workload = observer.seen, self.profile.phase_timeout_s, self.workload
        self.say(f"[capture] {workload.name}: {workload.summary}")
        self.say(f"[capture] {len(train)} requests through the gateway as tenant {self.tenant}")
        answers = await self.timed("capture", client.replay(train, "capture", self._counter(len(train))))
        failed = [a for a in answers if a.error]
        if len(failed) > len(answers) // 10:
            raise CumulusError(f"{len(failed)} of {len(answers)} requests failed, e.g. {failed[0].error}")
        self.workflow = self.workflow or next(a.workflow for a in answers if a.workflow)
        self.say(f"[capture] done: workflow {self.workflow}, {len(failed)} failed requests")

        self.say("[detect] waiting for the collector to nominate the workflow")
        await self.timed("detect", self._until(lambda: bool(seen.candidates), timeout, self._nudge()))
        detected_at = seen.candidates[0][0]

        self.say("[train] waiting for the trainer's adapter")
        await self.timed("train", self._until(lambda: seen.outcome() is not None, timeout))
        adapter = seen.outcome()
        assert adapter is not None
        passed = adapter.status == events_pb2.ADAPTER_STATUS_READY and adapter.gate_passed
        if not passed and workload.expected == "held":
            self.say(f"[held] {adapter.adapter_id} stopped at the offline gate: {adapter.error}")
            held_reason = await self.timed("held", self._held_reason(adapter))
            return summary.final(self, observer, client, adapter.adapter_id, "", detected_at, held_reason)
        if not passed:
            raise CumulusError(
                f"adapter {adapter.adapter_id} ended {events_pb2.AdapterStatus.Name(adapter.status)}: "
                f"offline score {adapter.offline_score:.2f} {adapter.error}",
                fix="see `cumulus logs trainer`; a bigger --profile trains longer",
            )

        self.say(f"[rollout] adapter {adapter.adapter_id} in shadow; held-out questions keep coming")
        good = adapter.adapter_id
        await self.timed(
            "rollout",
            self.traffic_until(client, held_out, "rollout", lambda: seen.finished(good)),
        )

        bad = ""
        if workload.broken_adapter_stage:
            bad = f"ad-broken-{self.tenant.removeprefix('demo-')}"
            self.say(f"[broken] pushing {bad} (random weights) past the offline gate")
            await self._push_broken(bad)
            await self.timed(
                "broken",
                self.traffic_until(client, held_out, "broken", lambda: seen.finished(bad)),
            )
        held_reason = "" if seen.final_state(good) == "promoted" else seen.rollout_states(good)[-1].reason
        self.learned = await collector_api.learned(self.config, self.tenant, self.workflow)
        body = summary.final(self, observer, client, good, bad, detected_at, held_reason)
        if self.drift and seen.final_state(good) == "promoted":
            body["drift"] = await run_drift(self, seen, good)
        return body

    # --- stages -----------------------------------------------------------------------------------
    async def traffic_until(
        self,
        client: WorkloadClient,
        items: list[Any],
        prefix: str,
        done: Callable[[], bool],
        answers: list[Answer] | None = None,
    ) -> None:
        """Send ``items`` round and round until ``done()`` (or the phase timeout); each answer is
        also appended to ``answers`` when given."""
        deadline = time.monotonic() + self.profile.phase_timeout_s
        source = cycle(items)

        def stop() -> bool:
            return done() or time.monotonic() > deadline

        def on_answer(answer: Answer) -> None:
            self._remember(answer)
            if answers is not None:
                answers.append(answer)

        while not stop():
            batch = [next(source) for _ in range(self.profile.concurrency)]
            await client.replay(batch, prefix, on_answer, stop)
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
            cfg.kafka.bootstrap_servers,
            cfg.state_dir / "spool" / "demo",
            producer_name="demo",
            # Announced as a trainer would: on a secure stack only the trainer's principal may.
            login=security.security_for(cfg, "trainer"),
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
        await collector_api.nominate(self.config, self.tenant, self.workflow)

    async def _held_reason(self, adapter: events_pb2.AdapterEvent) -> str:
        """Why nothing ships, in the services' words: the gate, then what the collector plans next."""
        interval = self.config.collector.detection.interval_s
        await asyncio.sleep(2 * interval + 1)  # the collector's next assessment sees the rejection
        learned = await collector_api.learned(self.config, self.tenant, self.workflow)
        self.learned = learned
        parts = [adapter.error or f"offline score {adapter.offline_score:.2f} under the gate"]
        parts += [w["reason"] for w in learned["waiting"]]
        parts += [s["advice"] for s in learned["sufficiency"] if s.get("advice")]
        return "; ".join(parts)

    # --- helpers ----------------------------------------------------------------------------------
    async def wait(self, phase: str, done: Callable[[], bool]) -> None:
        """Wait (timed as ``phase``) until ``done()``, at most the profile's phase timeout."""
        await self.timed(phase, self._until(done, self.profile.phase_timeout_s))

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

    async def timed(self, phase: str, work: Any) -> Any:
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
