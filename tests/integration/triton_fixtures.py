"""Pytest plugin: a real Triton (``python -m services.inference``) for integration tests.

Register it from the top-level conftest (pytest refuses ``pytest_plugins`` anywhere else)::

    pytest_plugins = ["tests.integration.triton_fixtures"]

``triton_server`` (session) yields the gRPC url (``127.0.0.1:<port>``) of a server whose model
``live`` is tiny-llama and ``small`` is the real SmolLM2-135M-Instruct, both bf16 as in production.
It listens on free ports (never 8000-8002, so a running local stack is untouched), keeps its state
in a temporary dir but converts models into the per-machine cache ``<repo>/.cumulus/models``
(the first run converts once, later runs start in seconds), and at teardown stops the whole
process group: tritonserver and the Python backend stubs included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_MODELS = REPO / ".cumulus" / "models"
LIVE_MODEL = "tiny-llama"
SMALL_MODEL = "smollm2-135m-instruct"
START_TIMEOUT_S = 600.0  # a first run on a fresh machine converts SmolLM2 (~20 s) and tiny-llama
STOP_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def triton_ports() -> dict[str, int]:
    """Three free loopback ports for grpc, http and metrics."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(3)]
        for sock in sockets:  # all bound at once, so the three differ
            sock.bind(("127.0.0.1", 0))
        grpc_port, http_port, metrics_port = (s.getsockname()[1] for s in sockets)
    return {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}


@pytest.fixture(scope="session")
def triton_http_url(triton_server: str, triton_ports: dict[str, int]) -> str:
    """KServe v2 HTTP base url of the same server (``http://127.0.0.1:<port>``)."""
    return f"http://127.0.0.1:{triton_ports['http']}"


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory, triton_ports: dict[str, int]) -> Iterator[str]:
    """Start the inference service, wait until ``live`` and ``small`` are ready, yield the gRPC url."""
    state_dir = tmp_path_factory.mktemp("triton-state")
    SHARED_MODELS.mkdir(parents=True, exist_ok=True)
    (state_dir / "models").symlink_to(SHARED_MODELS, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULUS_")}
    env.update(
        CUMULUS_STATE_DIR=str(state_dir),
        CUMULUS_TRITON__HOST="127.0.0.1",
        CUMULUS_TRITON__GRPC_PORT=str(triton_ports["grpc"]),
        CUMULUS_TRITON__HTTP_PORT=str(triton_ports["http"]),
        CUMULUS_TRITON__METRICS_PORT=str(triton_ports["metrics"]),
        CUMULUS_TRITON__LIVE_MODEL=LIVE_MODEL,
        CUMULUS_TRITON__SMALL_MODEL=SMALL_MODEL,
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    log_path = state_dir / "inference.log"
    grpc_url = f"127.0.0.1:{triton_ports['grpc']}"
    with log_path.open("wb") as log:
        # Own session, so the process group holds tritonserver and its stubs and dies as one.
        # cwd is the state dir so a developer's ./cumulus.yaml does not leak in.
        process = subprocess.Popen(
            [sys.executable, "-m", "services.inference"],
            cwd=state_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_ready(process, grpc_url, log_path)
        yield grpc_url
    finally:
        _stop_group(process)


def _wait_until_ready(process: subprocess.Popen[bytes], grpc_url: str, log_path: Path) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    deadline = time.monotonic() + START_TIMEOUT_S
    with grpcclient.InferenceServerClient(grpc_url) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"inference service exited with {process.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(InferenceServerException):
                if client.is_model_ready("live") and client.is_model_ready("small"):
                    return
            time.sleep(0.5)
    pytest.fail(f"Triton not ready after {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the service (it stops Triton itself); anything still in its group is a leak: kill, fail."""
    pgid = process.pid  # start_new_session: the group id is the leader's pid
    process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
    leftovers = _group_members(pgid, grace_s=5.0)
    if leftovers or process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait()
        _group_members(pgid, grace_s=5.0)
    assert process.returncode == 0 and not leftovers, (
        f"inference service exit {process.returncode}; left behind in its process group: {leftovers}"
    )


def _group_members(pgid: int, grace_s: float) -> list[str]:
    """Processes still in group ``pgid`` once ``grace_s`` has passed (helpers exit just after the leader)."""
    deadline = time.monotonic() + grace_s
    while True:
        found = subprocess.run(["pgrep", "-a", "-g", str(pgid)], capture_output=True, text=True).stdout
        members = found.splitlines()
        if not members or time.monotonic() > deadline:
            return members
        time.sleep(0.2)


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
