"""A whole local stack for a test, started through the CLI: free ports, its own state, shared caches."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import yaml

from cumulus.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli.main", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def processes_under(state_dir: Path) -> list[psutil.Process]:
    """Every process whose command line or environment points at this stack's state dir."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            environ = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(state_dir) in cmdline or environ.get("CUMULUS_STATE_DIR") == str(state_dir):
            found.append(proc)
    return found


def stack_config_file(tmp_path: Path, triton: dict[str, Any] | None = None) -> Iterator[Path]:
    """A config putting the whole stack on free ports with shared caches; stops it afterwards.

    ``triton`` overrides the Triton section (default: tiny models in float32).
    """
    p = free_ports(12)
    state = tmp_path / "state"
    config = {
        "state_dir": str(state),
        "model_cache_dir": str(REPO / ".cumulus" / "models"),
        "kafka": {
            "bootstrap_servers": f"127.0.0.1:{p[0]}",
            "controller_port": p[1],
            "libs_dir": str(REPO / ".cumulus" / "kafka" / "libs"),
        },
        "triton": {
            "http_port": p[2],
            "grpc_port": p[3],
            "metrics_port": p[4],
            **(
                triton
                if triton is not None
                else {"live_model": "tiny-llama", "small_model": "tiny-llama", "dtype": "float32"}
            ),
        },
        "gateway": {"grpc_port": p[5], "health_port": p[6], "http_port": p[11]},
        "collector": {"health_port": p[7]},
        "trainer": {"health_port": p[8]},
        "judge": {"health_port": p[9]},
        "router": {"health_port": p[10]},
    }
    path = tmp_path / "cumulus.yaml"
    path.write_text(yaml.safe_dump(config))
    yield path
    cli(path, "down")  # whatever a failed assertion left running
    for proc in processes_under(state.resolve()):
        proc.kill()


def wait_rollout(
    config: Path, workflow: str, states: tuple[str, ...], timeout_s: float = 60, tenant: str = ""
) -> dict[str, Any]:
    """The workflow's newest rollout (of ``tenant``, if given) once it is in one of ``states``."""
    deadline, rows = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        listed = cli(config, "rollout", "list", "--json")
        rows = [
            r
            for r in json.loads(listed.stdout or '{"rollouts": []}')["rollouts"]
            if r["workflow"] == workflow and tenant in ("", r["tenant"])
        ]
        if rows and rows[0]["state"] in states:
            return dict(rows[0])
        time.sleep(0.5)
    raise AssertionError(f"rollout of {workflow} never reached {states}: {rows}")


def ask(
    stub: gateway_pb2_grpc.GatewayStub, key: str, workflow: str, text: str, **fields: Any
) -> gateway_pb2.GenerateResponse:
    """One short request of ``workflow`` through the gateway, as the key's tenant; ``fields`` are
    more GenerateRequest fields (``session_key``, ``metadata``)."""
    request = gateway_pb2.GenerateRequest(
        workflow=workflow,
        messages=[common_pb2.ChatMessage(role="user", content=text)],
        params=common_pb2.GenerationParams(max_tokens=4),
        **fields,
    )
    return stub.Generate(request, metadata=[("authorization", f"Bearer {key}")], timeout=60)  # type: ignore[no-any-return]
