"""The live model as a real OpenAI-compatible server: llama.cpp's (llama-cpp-python's
``llama_cpp.server``) serving the offline SmolLM2 GGUF on CPU, behind a real gateway process on the
session's Kafka and Triton. The official SDK asks through the OpenAI door, streamed and not, and a
gRPC client through Generate; the endpoint answers as live, Triton's small model still serves a
canary, and every request is captured on Kafka with its answer and status.

Why llama.cpp: it is the OpenAI-compatible server that installs from PyPI and runs an offline
model on 2 CPU cores (vLLM and SGLang need a GPU); its streamed answers carry no usage (0.3.36),
so the gateway counts completion tokens as the deltas it got and prompt tokens stay 0.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cumulus.kafka import topics
from cumulus.models.catalog import SMOLLM2, get_spec
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2_grpc
from tests.integration.gateway_process import GatewayProcess, free_ports, session_gateway
from tests.integration.test_gateway import ask, publish_route, read_events, unique

pytestmark = pytest.mark.integration
openai = pytest.importorskip("openai", reason="a dev dependency (scripts/setup.sh)")
pytest.importorskip("llama_cpp", reason="pyproject's live-server extra (scripts/test.sh installs it)")
REPO = Path(__file__).resolve().parents[2]
ALIAS = "smollm2-live"


def gguf_file() -> Path:
    """The SmolLM2 GGUF joined from its package, once per machine."""
    path = REPO / ".cumulus" / "gguf" / "smollm2.gguf"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        with partial.open("wb") as out:
            get_spec(SMOLLM2).write_gguf(out)
        partial.replace(path)
    return path


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    [port] = free_ports(1)
    log = tmp_path_factory.mktemp("llama") / "server.log"
    args = ["--model", str(gguf_file()), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
            "--model_alias", ALIAS, "--n_threads", "1"]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", *args], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"llama.cpp server did not start:\n{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str, triton_server: str, llama_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    settings = {"CUMULUS_LIVE__BASE_URL": llama_server, "CUMULUS_LIVE__MODEL": ALIAS}
    with session_gateway(
        tmp_path_factory.mktemp("gateway-live"), kafka_bootstrap, triton_server, settings
    ) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[Any]:
    """The official SDK on the gateway's OpenAI door; closed after, so no socket outlives the test."""
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{gateway.http_port}/v1", api_key=gateway.key, max_retries=0
    ) as sdk:
        yield sdk


def test_a_real_openai_compatible_server_answers_as_live(
    gateway: GatewayProcess, client: Any, kafka_bootstrap: str
) -> None:
    workflow = unique("live-endpoint")
    messages = [{"role": "user", "content": "Name one colour."}]
    header = {"x-cumulus-workflow": workflow}
    raw = client.chat.completions.with_raw_response.create(
        model="live", messages=messages, max_tokens=8, extra_headers=header
    )
    reply = raw.parse()
    assert raw.headers["x-cumulus-route"] == "mode=live; model=live"
    assert reply.choices[0].message.content and reply.usage is not None and reply.usage.completion_tokens > 0
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="live", messages=messages, max_tokens=8, stream=True, extra_headers=header
        )
        if chunk.choices
    )
    assert streamed == reply.choices[0].message.content  # greedy: the same answer
    with grpc.insecure_channel(gateway.address) as channel:
        answer = gateway_pb2_grpc.GatewayStub(channel).Generate(
            ask("Name one colour.", workflow), metadata=gateway.auth, timeout=60
        )
    assert answer.text and answer.route.mode == common_pb2.ROUTE_MODE_LIVE

    # Triton's small model still answers a canary of the same workflow; live stays the endpoint.
    canary = events_pb2.WeightedTarget(target=common_pb2.RouteTarget(model="small"), weight=1.0)
    asyncio.run(
        publish_route(
            kafka_bootstrap, workflow, 1, live=common_pb2.RouteTarget(model="live"), canary=[canary]
        )
    )
    deadline, route = time.monotonic() + 30, ""
    while route != "mode=promoted; model=small" and time.monotonic() < deadline:
        time.sleep(0.5)  # until the gateway has read the table
        sent = client.chat.completions.with_raw_response.create(
            model="live", messages=messages, max_tokens=4, extra_headers=header
        )
        route = sent.headers["x-cumulus-route"]
    assert route == "mode=promoted; model=small"

    events = asyncio.run(
        read_events(kafka_bootstrap, topics.INFERENCE, lambda e: e.meta.workflow == workflow, count=4)
    )
    live = [e for e in events if e.route.target.model == "live"]
    assert len(live) >= 3 and all(e.status == common_pb2.STATUS_OK for e in events)
    assert reply.choices[0].message.content in [e.response_text for e in live]
    assert all(e.usage.completion_tokens > 0 for e in live)
