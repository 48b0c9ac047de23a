"""`cumulus up` / `status` / `down` end to end: real Kafka, Triton and every service as processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as grpcclient
import yaml

from cumulus.artifacts import ArtifactStore
from cumulus.config import load_config
from cumulus.kafka import topics
from cumulus.v1 import common_pb2, gateway_pb2_grpc
from ops.demo.broken import register_broken_adapter
from tests.integration.router_process import publish
from tests.integration.stack_process import ask, cli, processes_under, stack_config_file, wait_rollout

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack_config(tmp_path: Path) -> Iterator[Path]:
    """A config putting the whole stack on free ports, tiny models, and shared caches."""
    yield from stack_config_file(tmp_path)


def test_port_taken_is_a_clear_error_and_starts_nothing(stack_config: Path) -> None:
    config = yaml.safe_load(stack_config.read_text())
    taken = int(config["triton"]["grpc_port"])
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", taken))
        blocker.listen()
        result = cli(stack_config, "up")
    assert result.returncode == 1
    assert f"port 127.0.0.1:{taken} needed by triton is already in use" in result.stderr
    assert processes_under(Path(config["state_dir"]).resolve()) == []


def test_up_status_down(stack_config: Path) -> None:
    config = yaml.safe_load(stack_config.read_text())
    # Audit half of a promoted workflow's requests, so the audit stage below needs few of them.
    config["router"]["audit_share"] = 0.5
    stack_config.write_text(yaml.safe_dump(config))
    state = Path(config["state_dir"]).resolve()

    up = cli(stack_config, "up", timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr
    key = (state / "dev-api-key").read_text().strip()
    assert key and key in up.stdout
    assert f"127.0.0.1:{config['gateway']['grpc_port']}" in up.stdout

    status = cli(stack_config, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    components = json.loads(status.stdout)["components"]
    assert set(components) == {"kafka", "triton", "gateway", "collector", "trainer", "judge", "router"}
    assert all(info["healthy"] for info in components.values()), components
    assert set(components["kafka"]["topics"]) == {spec.name for spec in topics.ALL_TOPICS}

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{config['triton']['grpc_port']}")
    assert client.is_model_ready("live") and client.is_model_ready("small")
    client.close()

    again = cli(stack_config, "up")
    assert again.returncode == 1 and "already running" in again.stderr

    _requests_are_counted_exactly_across_a_collector_kill(stack_config, config, state, key)
    _the_audit_rolls_back_a_promoted_adapter_that_is_wrong(stack_config, config, state, key)
    _the_readme_openai_client_works_verbatim(config, key)

    logs = cli(stack_config, "logs", "gateway", "-n", "200")
    assert logs.returncode == 0 and "service=gateway" in logs.stdout

    down = cli(stack_config, "down", timeout=180)
    assert down.returncode == 0, down.stderr
    assert "kafka" in down.stdout and "triton" in down.stdout
    assert processes_under(state) == [], "cumulus down left processes behind"
    after = json.loads(cli(stack_config, "status", "--json").stdout)["components"]
    assert not any(info["healthy"] or info["running"] for info in after.values())


def _requests_are_counted_exactly_across_a_collector_kill(
    stack_config: Path, config: dict, state: Path, key: str
) -> None:
    """50 requests through the gateway on a fresh workflow → exactly 50 in `cumulus workflows --json`,
    with the collector killed (-9) and restarted while they flow."""
    workflow = f"e2e-{uuid.uuid4().hex[:8]}"
    sent: list[str] = []

    def send_all() -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{config['gateway']['grpc_port']}")
        stub = gateway_pb2_grpc.GatewayStub(channel)
        for i in range(50):
            response = ask(stub, key, workflow, f"ticket {i}: printer on fire")
            sent.append(response.request_id)
            time.sleep(0.05)
        channel.close()

    sender = threading.Thread(target=send_all)
    sender.start()
    while len(sent) < 20:
        time.sleep(0.05)
    collector = json.loads((state / "run" / "collector.json").read_text())
    os.kill(collector["pid"], signal.SIGKILL)  # mid-stream, no chance to flush or commit
    restarted = cli(stack_config, "restart", "collector", timeout=120)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    sender.join(timeout=120)
    assert len(set(sent)) == 50

    deadline, requests = time.monotonic() + 60, -1
    while time.monotonic() < deadline:
        listed = cli(stack_config, "workflows", "--json")
        assert listed.returncode == 0, listed.stderr
        requests = next((w["requests"] for w in json.loads(listed.stdout) if w["workflow"] == workflow), 0)
        if requests >= 50:
            break
        time.sleep(1)
    assert requests == 50


def _the_audit_rolls_back_a_promoted_adapter_that_is_wrong(
    stack_config: Path, config: dict, state: Path, key: str
) -> None:
    """An adapter wrong for its traffic (random weights, promoted by an operator past every gate):
    the gateway audits its answers against live, the judge grades them, the router rolls back."""
    workflow = f"audit-{uuid.uuid4().hex[:8]}"
    loaded = load_config(stack_config, env={})
    event = register_broken_adapter(
        ArtifactStore(loaded.artifacts_dir),
        tenant="dev",
        workflow=workflow,
        adapter_id=f"ad-wrong-{uuid.uuid4().hex[:6]}",
        base_model="tiny-llama",
        models_dir=loaded.models_dir,
    )
    asyncio.run(publish(config["kafka"]["bootstrap_servers"], [(topics.ADAPTERS, event)]))
    rollout = wait_rollout(stack_config, workflow, ("shadow",))
    assert rollout["adapter_id"] == event.adapter_id
    promoted = cli(stack_config, "rollout", "promote", workflow, "--tenant", "dev")
    assert promoted.returncode == 0, promoted.stderr
    wait_rollout(stack_config, workflow, ("promoted",))

    started, degraded = time.monotonic(), 0
    with grpc.insecure_channel(f"127.0.0.1:{config['gateway']['grpc_port']}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        for i in range(300):
            reply = ask(stub, key, workflow, f"question {i}: where is my parcel?")
            if reply.route.mode == common_pb2.ROUTE_MODE_LIVE:
                break
            degraded += reply.route.mode == common_pb2.ROUTE_MODE_PROMOTED
            time.sleep(0.1)
    took_s = time.monotonic() - started
    rolled_back = wait_rollout(stack_config, workflow, ("rolled_back",))
    assert rolled_back["reason"].startswith("audit after promotion"), rolled_back
    print(f"audit rolled back {event.adapter_id} after {degraded} answers it served, in {took_s:.1f} s")
    assert reply.route.mode == common_pb2.ROUTE_MODE_LIVE and 0 < degraded < 300


def _the_readme_openai_client_works_verbatim(config: dict, key: str) -> None:
    """The README's OpenAI SDK script, as printed there, against this stack's HTTP door."""
    readme = (REPO / "README.md").read_text()
    script = readme.split("<!-- openai-client -->\n```python\n", 1)[1].split("```", 1)[0]
    env = {
        **os.environ,
        "CUMULUS_OPENAI_URL": f"http://127.0.0.1:{config['gateway']['http_port']}/v1",
        "CUMULUS_API_KEY": key,
    }
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "mode=live; model=live", run.stdout
