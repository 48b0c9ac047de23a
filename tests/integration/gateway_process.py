"""A real gateway (``python -m services.gateway``) as a subprocess on free ports, for tests and benches.

It gets its own state dir (API keys, spool), the dev key of tenant ``dev``, and the machine's
model cache (``<repo>/.cumulus/models``) for its tokenizers. ``start`` returns once /readyz says
ready (Triton answers, routes read, tokenizers loaded); ``stop`` sends SIGTERM and returns the
exit code after the gateway drained and flushed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cumulus.apikeys import ensure_dev_key
from ops.stack.probes import http_json

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass
class GatewayProcess:
    state_dir: Path
    process: subprocess.Popen[bytes]
    grpc_port: int
    health_port: int
    key: str
    http_port: int = 0
    """The OpenAI-compatible HTTP door's port."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.key}"),)

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        kafka_bootstrap: str,
        triton_url: str,
        live_model: str,
        small_model: str,
        settings: Mapping[str, str] | None = None,
    ) -> GatewayProcess:
        """Launch the gateway and wait until it is ready; ``settings`` are extra CUMULUS_* variables."""
        state_dir.mkdir(parents=True, exist_ok=True)
        key = ensure_dev_key(state_dir)
        grpc_port, health_port, http_port = free_ports(3)
        triton_host, _, triton_port = triton_url.rpartition(":")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUMULUS_")}
        env.update(
            CUMULUS_STATE_DIR=str(state_dir),
            CUMULUS_MODEL_CACHE_DIR=str(REPO / ".cumulus" / "models"),
            CUMULUS_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
            CUMULUS_TRITON__HOST=triton_host,
            CUMULUS_TRITON__GRPC_PORT=triton_port,
            CUMULUS_TRITON__LIVE_MODEL=live_model,
            CUMULUS_TRITON__SMALL_MODEL=small_model,
            CUMULUS_GATEWAY__GRPC_PORT=str(grpc_port),
            CUMULUS_GATEWAY__HEALTH_PORT=str(health_port),
            CUMULUS_GATEWAY__HTTP_PORT=str(http_port),
            HF_HUB_OFFLINE="1",
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
            **dict(settings or {}),
        )
        with (state_dir / "gateway.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.gateway"],
                cwd=state_dir,  # a developer's ./cumulus.yaml must not leak in
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        gateway = cls(state_dir, process, grpc_port, health_port, key, http_port)
        gateway.wait_ready()
        return gateway

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        body: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, body = http_json(f"http://127.0.0.1:{self.health_port}/readyz")
                if status == 200:
                    return
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"gateway not ready after {timeout_s:.0f}s ({body}):\n{self.log_tail()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait for a clean exit (drain + flush), and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        path = self.state_dir / "gateway.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextlib.contextmanager
def session_gateway(
    state_dir: Path, kafka_bootstrap: str, triton_url: str, settings: Mapping[str, str]
) -> Iterator[GatewayProcess]:
    """A gateway on the session's Kafka and Triton (and its models); it must exit 0 on SIGTERM."""
    from tests.integration.triton_fixtures import LIVE_MODEL, SMALL_MODEL

    process = GatewayProcess.start(
        state_dir,
        kafka_bootstrap=kafka_bootstrap,
        triton_url=triton_url,
        live_model=LIVE_MODEL,
        small_model=SMALL_MODEL,
        settings=settings,
    )
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"gateway exited {code} on SIGTERM:\n{process.log_tail()}"
