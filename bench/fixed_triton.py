"""A Triton whose decoupled models ``live`` and ``small`` answer one fixed text at once.

The TensorRT-LLM request interface of services/inference/protocol.py, no model behind it: what
bench/gateway_overhead.py measures the gateway against. ``start_fixed_triton`` runs this file as its
own process (``python bench/fixed_triton.py GRPC HTTP METRICS WORKSPACE``) in its own process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXED_TEXT = "The quick brown fox jumps over the lazy dog."


def serve_fixed(grpc_port: int, http_port: int, metrics_port: int, workspace: Path) -> None:
    """Serve ``live`` and ``small`` answering FIXED_TEXT (decoupled, as TensorRT-LLM) until SIGTERM."""
    import numpy as np
    from pytriton.model_config import ModelConfig
    from pytriton.triton import Triton, TritonConfig

    from services.inference.protocol import INPUTS, OUTPUTS

    # The Python backend stub must load this interpreter's libpython (see FIELD-NOTES.md).
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
    answer = {
        "text_output": np.array([[FIXED_TEXT.encode()]], dtype=object),
        "prompt_tokens": np.array([[8]], dtype=np.int32),
        "completion_tokens": np.array([[10]], dtype=np.int32),
    }

    async def infer(requests: list[Any]) -> Any:
        yield [answer for _ in requests]

    stop = False

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    config = TritonConfig(
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        http_address="127.0.0.1",
        http_port=http_port,
        metrics_address="127.0.0.1",
        metrics_port=metrics_port,
    )
    with Triton(config=config, workspace=workspace) as triton:
        for name in ("live", "small"):
            triton.bind(
                model_name=name,
                infer_func=infer,
                inputs=INPUTS,
                outputs=OUTPUTS,
                config=ModelConfig(batching=True, max_batch_size=8, batcher=None, decoupled=True),
                strict=True,
            )
        triton.run()
        while not stop and triton.is_alive():
            time.sleep(0.2)


def start_fixed_triton(state: Path, cleanup: contextlib.ExitStack) -> str:
    """Run this file as a server process; return its gRPC url once both models are ready."""
    import tritonclient.grpc as grpcclient

    from tests.integration.gateway_process import free_ports

    ports = free_ports(3)
    with (state / "triton.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, __file__, *map(str, ports), str(state / "triton-workspace")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cleanup.callback(_stop_group, server)
    url = f"127.0.0.1:{ports[0]}"
    deadline = time.monotonic() + 120.0
    with grpcclient.InferenceServerClient(url) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"fixed Triton exited: {(state / 'triton.log').read_text()[-3000:]}")
            with contextlib.suppress(Exception):
                if client.is_model_ready("live") and client.is_model_ready("small"):
                    return url
            time.sleep(0.5)
    raise RuntimeError("fixed Triton not ready after 120 s")


def _stop_group(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # for services.inference.protocol
    grpc_port, http_port, metrics_port, workspace = sys.argv[1:5]
    serve_fixed(int(grpc_port), int(http_port), int(metrics_port), Path(workspace))
