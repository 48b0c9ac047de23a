"""The dashboard end to end: events on Kafka -> the real collector (chDB) -> its read API -> the page.

One rollout of two minutes is published the way the services publish it (an adapter in training
then ready, the router's transitions shadow -> canary -> promoted, a judge verdict every second),
plus live traffic and a manual nomination. The JSON endpoints are checked first; then Debian's
Chromium, headless and offline, loads /dashboard and the dumped DOM must hold the charts drawn
from that data and the tables listing it.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cumulus.kafka import codec, topics
from cumulus.operators import ensure_dev_operator_token
from cumulus.v1 import events_pb2
from tests.integration.collector_process import (
    CollectorProcess,
    inference_event,
    produce,
    stamped,
    start_at_end,
)

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
WEIGHTS = [("", "shadow", 0.0), ("shadow", "canary", 0.05), ("canary", "canary", 0.25)]
WEIGHTS += [("canary", "canary", 0.5), ("canary", "promoted", 1.0)]
ROLLOUT_S = 120
VERDICTS = 116  # one a second from the start of the rollout until just before promotion
REQUESTS = 40


@dataclass
class Seeded:
    collector: CollectorProcess
    workflow: str
    adapter_id: str

    @property
    def rollout_id(self) -> str:
        return f"{self.workflow}/{self.adapter_id}"


def _at(event: Any, seconds_ago: float) -> Any:
    event.meta.occurred_at.FromNanoseconds(time.time_ns() - int(seconds_ago * 1e9))
    return event


def _events(workflow: str, adapter_id: str) -> dict[str, list[Any]]:
    def meta(producer: str) -> Any:
        return codec.new_meta(tenant="acme", workflow=workflow, producer=producer)

    training = events_pb2.AdapterEvent(
        meta=meta("trainer"), adapter_id=adapter_id, status=events_pb2.ADAPTER_STATUS_TRAINING, progress=0.5
    )
    ready = events_pb2.AdapterEvent(
        meta=meta("trainer"),
        adapter_id=adapter_id,
        status=events_pb2.ADAPTER_STATUS_READY,
        progress=1.0,
        offline_score=0.93,
        gate_passed=True,
        lora_task_id=7,
        metrics={"agreement": 0.93},
    )
    step_s = ROLLOUT_S / (len(WEIGHTS) - 1)
    rollouts = [
        _at(
            events_pb2.RolloutEvent(
                meta=meta("router"),
                rollout_id=f"{workflow}/{adapter_id}",
                adapter_id=adapter_id,
                from_state=from_state,
                to_state=to_state,
                weight=weight,
                step=step,
                reason=f"step {step}",
                evidence={"n": 100.0, "pass_rate": 0.9},
            ),
            ROLLOUT_S + 5 - step * step_s,
        )
        for step, (from_state, to_state, weight) in enumerate(WEIGHTS)
    ]
    verdicts = [
        _at(
            events_pb2.Verdict(
                meta=meta("judge"),
                verdict_id=f"v-{i}",
                pair_id=f"pair-{i}",
                adapter_id=adapter_id,
                grader="tool_call",
                score=1.0 if i % 8 else 0.0,
                passed=bool(i % 8),
            ),
            ROLLOUT_S + 4 - i,
        )
        for i in range(VERDICTS)
    ]
    return {
        topics.ADAPTERS.name: [_at(training, 300), _at(ready, ROLLOUT_S + 6)],
        topics.ROLLOUTS.name: rollouts,
        topics.VERDICTS.name: verdicts,
        topics.DRIFT.name: [
            events_pb2.DriftSignal(
                meta=meta("collector"),
                adapter_id=adapter_id,
                signal="template",
                severity=events_pb2.DRIFT_SEVERITY_NOTICE,
                detail="12% of 40 requests have a system prompt never trained on",
            )
        ],
    }


def _wait_for(collector: CollectorProcess, workflow: str, expected: dict[str, int]) -> None:
    """Until each table holds the expected events of the workflow and its adapter is ready.

    The adapter's two events may be merged into one row on insert (optimize_on_insert), so it is
    waited for by its latest status, not by a count.
    """
    deadline = time.monotonic() + 90
    counts: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = collector.get(f"/api/v1/capture?workflow={workflow}")
        assert status == 200, body
        counts = {table: body["tables"][table]["events"] for table in expected}
        status, body = collector.get(f"/api/v1/adapters?workflow={workflow}")
        assert status == 200, body
        counts["adapter"] = [a["status"] for a in body["adapters"]]
        if counts == {**expected, "adapter": ["ready"]}:
            return
        time.sleep(0.3)
    raise AssertionError(f"{workflow}: {counts} after 90 s, expected {expected} and a ready adapter")


def _rejected(candidate: dict[str, Any]) -> tuple[bytes, bytes]:
    """The trainer's answer to the manual nomination: rejected on gold (the learning curve's point)."""
    event = events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant="acme", workflow=candidate["workflow"], producer="trainer"),
        adapter_id="ad-retry",
        candidate_id=candidate["candidate_id"],
        base_model=candidate["base_model"],
        status=events_pb2.ADAPTER_STATUS_REJECTED,
        metrics={"gate_test": 1.0, "candidate_gold_accuracy": 0.4, "gold_rows": 12.0},
    )
    return codec.encode_key("acme", candidate["workflow"]), codec.encode_event(event)


def _wait_for_curve(collector: CollectorProcess, workflow: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = collector.get("/api/v1/candidates")
        assert status == 200, body
        if any(c["workflow"] == workflow for c in body["learning_curves"]):
            return
        time.sleep(0.3)
    raise AssertionError(f"{workflow}: no learning curve after 60 s: {body}")


@pytest.fixture(scope="module")
def seeded(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A collector holding one finished rollout, its adapter, verdicts, traffic and a candidate."""
    workflow, adapter_id = f"dash-{uuid.uuid4().hex[:6]}", f"ad-{uuid.uuid4().hex[:6]}"
    settings = {
        "CUMULUS_COLLECTOR__DETECTION__ENABLED": "false",
        "CUMULUS_COLLECTOR__EXPORT__MIN_EXAMPLES": "10",
    }
    collector = CollectorProcess(tmp_path_factory.mktemp("collector"), kafka_bootstrap, settings=settings)
    asyncio.run(start_at_end(kafka_bootstrap, collector.group_id))
    collector.start()
    try:
        traffic = [stamped(inference_event(workflow, i)) for i in range(REQUESTS)]
        asyncio.run(produce(kafka_bootstrap, topics.INFERENCE.name, traffic))
        for topic, events in _events(workflow, adapter_id).items():
            records = [(codec.encode_key("acme", workflow), codec.encode_event(e)) for e in events]
            asyncio.run(produce(kafka_bootstrap, topic, records))
        expected = {
            "requests": REQUESTS,
            "rollout_events": len(WEIGHTS),
            "verdicts": VERDICTS,
            "drift_signals": 1,
        }
        _wait_for(collector, workflow, expected)
        status, body = collector.request("POST", f"/api/v1/workflows/{workflow}/nominate", {"reason": "demo"})
        assert status == 200, body
        asyncio.run(produce(kafka_bootstrap, topics.ADAPTERS.name, [_rejected(body)]))
        _wait_for_curve(collector, workflow)
        yield Seeded(collector, workflow, adapter_id)
    finally:
        assert collector.stop() == 0, collector.log_tail()


def test_read_api_serves_adapters_and_rollout_history(seeded: Seeded) -> None:
    status, body = seeded.collector.get(f"/api/v1/adapters?workflow={seeded.workflow}")
    assert status == 200, body
    # two events, one adapter: the latest version wins (ad-retry is the nomination's answer)
    (adapter,) = [a for a in body["adapters"] if a["adapter_id"] == seeded.adapter_id]
    assert adapter["adapter_id"] == seeded.adapter_id and adapter["status"] == "ready"
    assert adapter["gate_passed"] is True and adapter["lora_task_id"] == 7
    assert adapter["metrics"] == {"agreement": 0.93}

    status, body = seeded.collector.get(f"/api/v1/rollouts?workflow={seeded.workflow}")
    assert status == 200, body
    (rollout,) = body["rollouts"]
    assert rollout["rollout_id"] == seeded.rollout_id
    assert (rollout["state"], rollout["weight"], rollout["finished"]) == ("promoted", 1.0, True)
    assert [t["weight"] for t in rollout["transitions"]] == [w for _, _, w in WEIGHTS]
    assert [p["weight"] for p in rollout["traffic"]] == [w for _, _, w in WEIGHTS]
    assert rollout["bucket_s"] == 5 and len(rollout["pass_rate"]) >= 20
    assert rollout["verdicts"]["n"] == VERDICTS
    assert rollout["verdicts"]["passed"] == sum(1 for i in range(VERDICTS) if i % 8)

    status, body = seeded.collector.request("GET", "/api/v1/rollouts?limit=0")
    assert status == 400 and "limit" in body["error"]


class Dom(HTMLParser):
    """The dumped page as a list of (tag, attributes, enclosing rollout card id), and each id's text."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], str]] = []
        self.text: dict[str, str] = defaultdict(str)
        self._open: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        cards = [a["data-rollout-id"] for _, a in self._open if "data-rollout-id" in a]
        self.elements.append((tag, attributes, cards[-1] if cards else ""))
        if tag not in self.VOID:
            self._open.append((tag, attributes))

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def find(self, tag: str, card: str | None = None) -> list[dict[str, str]]:
        """Attributes of every ``tag`` element (inside rollout card ``card`` when given)."""
        return [a for t, a, c in self.elements if t == tag and card in (None, c)]

    def handle_data(self, data: str) -> None:
        for _, attributes in self._open:
            if "id" in attributes:
                self.text[attributes["id"]] += data


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (10 s of virtual time: the first refreshes)."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed: apt-get install -y chromium"
)
def test_dashboard_renders_charts_with_data_in_headless_chromium(seeded: Seeded, tmp_path: Path) -> None:
    # Without the token the page loads and says what is missing; with it, the charts are drawn.
    bare = Dom(dump_dom(f"{seeded.collector.base_url}/dashboard", tmp_path / "chromium-bare"))
    assert "missing operator token" in bare.text["status"], bare.text["status"]
    token = ensure_dev_operator_token(seeded.collector.state_dir)
    link = f"{seeded.collector.base_url}/#token={token}"  # "/" redirects, the fragment goes along
    dom = Dom(dump_dom(link, tmp_path / "chromium-profile"))

    (body,) = dom.find("body")
    assert int(body["data-refreshes"]) >= 1
    assert "updated" in dom.text["status"], dom.text["status"]  # no API error shown
    charts = {a["data-series"]: a for a in dom.find("svg", seeded.rollout_id)}
    assert int(charts["traffic"]["data-points"]) == len(WEIGHTS)
    assert int(charts["pass_rate"]["data-points"]) >= 20
    paths = {a["class"]: a["d"] for a in dom.find("path", seeded.rollout_id)}
    assert paths["line traffic"].startswith("M") and paths["line traffic"].count("V") == len(WEIGHTS) - 1
    assert paths["line pass_rate"].count("L") == int(charts["pass_rate"]["data-points"]) - 1
    assert len(dom.find("circle", seeded.rollout_id)) == int(charts["pass_rate"]["data-points"])

    assert seeded.workflow in dom.text["workflows-table"]
    assert seeded.adapter_id in dom.text["adapters-table"] and "ready" in dom.text["adapters-table"]
    assert seeded.workflow in dom.text["candidates-table"] and "demo" in dom.text["candidates-table"]
    (learning,) = [a for a in dom.find("svg") if a.get("data-series") == "learning"]
    assert learning["data-points"] == "1" and len(dom.find("circle", None)) > 0
    assert "gate score by dataset size" in dom.text["learning"] and seeded.workflow in dom.text["learning"]
    assert "template" in dom.text["drift-table"] and "never trained on" in dom.text["drift-table"]
    (rollouts,) = [a for a in dom.find("div") if a.get("id") == "rollouts"]
    assert rollouts["data-rows"] == "1"
