"""Gateway overhead: one fixed-output Triton model called directly and through the gateway.

Starts, each as its own process on free loopback ports: a Triton (PyTriton's tritonserver) whose
decoupled models ``live`` and ``small`` answer a fixed text at once through the TensorRT-LLM
interface (this script with ``--serve-fixed``), a Kafka broker (unless ``--kafka`` names one) and
the gateway (``python -m services.gateway``, capturing every request to Kafka as in production).
Then, for each concurrency, the same KServe v2 ``ModelStreamInfer`` request is sent by that many
closed-loop workers, first to Triton directly, then to the gateway's drop-in endpoint, and the
latency percentiles and throughput of both are compared. The measured time is split into rounds
that alternate between the two sides (direct first, then the gateway first, ...) and the percentiles
are taken over all rounds together, so drift on a shared machine hits both sides alike; the
gateway's CPU per request is read from /proc. The load generator (asyncio, one channel,
a new stream per request, as tritonclient.grpc.aio's stream_infer opens) sends pre-serialised request
bytes, so both sides pay the same client cost; NVIDIA's perf_analyzer would be the independent
choice, but its PyPI package offers no build for this platform. The last line is one JSON object::

    .venv/bin/python bench/gateway_overhead.py            # 1 and 64 concurrent, 10 s each
    .venv/bin/python bench/gateway_overhead.py --quick    # 3 s each

Everything shares this machine's cores, so the gateway competes with Triton and the load
generator for CPU: on a 2-core box the throughput ratio is a lower bound of a deployment where
the gateway has cores of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXED_TEXT = "The quick brown fox jumps over the lazy dog."
TARGETS = {"p50_added_ms": 0.5, "p99_added_ms": 2.0, "throughput_ratio": 0.9}


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


def request_bytes() -> bytes:
    """One serialised ModelInferRequest of the generate interface (stream=false, empty final flag)."""
    import numpy as np
    from tritonclient.grpc import service_pb2

    from cumulus.trtllm import interface, tensors

    request = service_pb2.ModelInferRequest(model_name="live")
    tensors.add_bytes_input(
        request, "text_input", [b"<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"]
    )
    tensors.add_input(request, "max_tokens", np.array([[16]], dtype=np.int32))
    tensors.add_input(request, "stream", np.array([[False]], dtype=np.bool_))
    request.parameters[interface.EMPTY_FINAL].bool_param = True
    request.parameters["cumulus_workflow"].string_param = "bench"
    return bytes(request.SerializeToString())


async def load(
    address: str,
    metadata: tuple[tuple[str, str], ...],
    concurrency: int,
    seconds: float,
    *,
    warmup_s: float = 1.0,
    pid: int | None = None,
) -> dict[str, Any]:
    """``concurrency`` closed-loop workers, one request per stream, for ``seconds`` after a warm-up.

    Returns the latencies (ms), the measured time, and the CPU seconds process ``pid`` used meanwhile.
    """
    import grpc
    from tritonclient.grpc import service_pb2

    body = request_bytes()
    latencies: list[float] = []
    errors: list[str] = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=None,
            response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
        )

        async def one() -> None:
            started = time.perf_counter()
            async for reply in call(iter((body,)), metadata=metadata):
                if reply.error_message:
                    errors.append(reply.error_message)
            latencies.append((time.perf_counter() - started) * 1000.0)

        async def worker(until: float) -> None:
            while time.perf_counter() < until:
                await one()

        await asyncio.gather(*(worker(time.perf_counter() + warmup_s) for _ in range(concurrency)))
        latencies.clear()
        cpu_before = _cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_s = _cpu_seconds(pid) - cpu_before
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return {"latencies": latencies, "elapsed": elapsed, "cpu_s": cpu_s}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentiles over the latencies of all ``rounds``; throughput over their total time."""
    latencies = sorted(ms for r in rounds for ms in r["latencies"])
    elapsed = sum(r["elapsed"] for r in rounds)
    summary = {
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
    }
    cpu_s = sum(r["cpu_s"] for r in rounds)
    if cpu_s > 0:
        summary["cpu_us_per_request"] = round(cpu_s / len(latencies) * 1e6)
    return summary


def _cpu_seconds(pid: int | None) -> float:
    """User+system CPU time of process ``pid`` (all its threads); 0 without a pid or /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass(frozen=True)
class Side:
    """Where one side of the comparison is served, and the process whose CPU is counted (or None)."""

    address: str
    metadata: tuple[tuple[str, str], ...]
    pid: int | None


def measure(
    direct: Side, gateway: Side, concurrency: int, seconds: float, rounds: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sides for ``seconds`` each, in ``rounds`` that alternate which side goes first."""
    measured: dict[Side, list[dict[str, Any]]] = {direct: [], gateway: []}
    for index in range(rounds):
        for side in (direct, gateway) if index % 2 == 0 else (gateway, direct):
            warmup_s = 1.0 if index < 2 else 0.2  # later rounds only need their new channel connected
            run = load(
                side.address, side.metadata, concurrency, seconds / rounds, warmup_s=warmup_s, pid=side.pid
            )
            measured[side].append(asyncio.run(run))
    return summarize(measured[direct]), summarize(measured[gateway])


def compare(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, Any]:
    return {
        "direct": direct,
        "gateway": gateway,
        "p50_added_ms": round(gateway["p50_ms"] - direct["p50_ms"], 3),
        "p99_added_ms": round(gateway["p99_ms"] - direct["p99_ms"], 3),
        "throughput_ratio": round(gateway["throughput_rps"] / direct["throughput_rps"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per side and concurrency")
    parser.add_argument("--quick", action="store_true", help="3 s per measurement")
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating rounds the measured time is split into"
    )
    parser.add_argument(
        "--kafka", default="", help="bootstrap servers of a running broker (default: start one)"
    )
    parser.add_argument(
        "--serve-fixed", nargs=4, metavar=("GRPC", "HTTP", "METRICS", "WORKSPACE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # for tests.integration.gateway_process and services.*
    if args.serve_fixed:
        grpc_port, http_port, metrics_port, workspace = args.serve_fixed
        serve_fixed(int(grpc_port), int(http_port), int(metrics_port), Path(workspace))
        return
    seconds = 3.0 if args.quick else args.seconds
    with contextlib.ExitStack() as cleanup:
        state = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="gateway-bench-")))
        kafka = args.kafka or start_kafka(state, cleanup)
        triton_url = start_fixed_triton(state, cleanup)
        from tests.integration.gateway_process import GatewayProcess

        gateway = GatewayProcess.start(
            state / "gateway",
            kafka_bootstrap=kafka,
            triton_url=triton_url,
            live_model="tiny-llama",
            small_model="tiny-llama",
        )
        cleanup.callback(gateway.stop)
        results: dict[str, Any] = {"seconds": seconds, "rounds": args.rounds, "cpus": os.cpu_count()}
        sides = {
            "direct": Side(triton_url, (), None),
            "gateway": Side(gateway.address, gateway.auth, gateway.process.pid),
        }
        for concurrency in args.concurrency:
            direct, through = measure(sides["direct"], sides["gateway"], concurrency, seconds, args.rounds)
            results[f"c{concurrency}"] = compare(direct, through)
            print(f"concurrency={concurrency}", json.dumps(results[f"c{concurrency}"]), flush=True)
    low, high = f"c{min(args.concurrency)}", f"c{max(args.concurrency)}"
    results["p50_added_ms"] = results[low]["p50_added_ms"]
    results["p99_added_ms"] = results[low]["p99_added_ms"]
    results["throughput_ratio"] = results[high]["throughput_ratio"]
    results["targets"] = TARGETS
    results["targets_met"] = (
        results["p50_added_ms"] <= TARGETS["p50_added_ms"]
        and results["p99_added_ms"] <= TARGETS["p99_added_ms"]
        and results["throughput_ratio"] >= TARGETS["throughput_ratio"]
    )
    print(json.dumps(results, sort_keys=True))


def start_kafka(state: Path, cleanup: contextlib.ExitStack) -> str:
    """A single-node broker with every cumulus topic, stopped (its whole process group) on exit."""
    from cumulus.config import KafkaConfig
    from cumulus.kafka.admin import ensure_topics
    from cumulus.kafka.topics import ALL_TOPICS
    from ops.stack import kafka
    from tests.integration.gateway_process import free_ports

    port, controller_port = free_ports(2)
    config = KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}", controller_port=controller_port)
    layout = kafka.BrokerLayout.from_config(
        state / "kafka", config, kafka.ensure_jars(REPO / ".cumulus/kafka/libs")
    )
    kafka.write_server_properties(layout, config)
    kafka.format_storage(layout)
    with layout.log_file.open("wb") as log:
        broker = subprocess.Popen(
            kafka.broker_command(layout, config),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=kafka.broker_env(),
            start_new_session=True,
        )
    cleanup.callback(_stop_group, broker)
    asyncio.run(kafka.wait_until_ready(layout.bootstrap, 120.0))
    asyncio.run(ensure_topics(layout.bootstrap, ALL_TOPICS, config.partitions, config.replication_factor))
    return layout.bootstrap


def start_fixed_triton(state: Path, cleanup: contextlib.ExitStack) -> str:
    """Run this script's ``--serve-fixed`` mode; return its gRPC url once both models are ready."""
    import tritonclient.grpc as grpcclient

    from tests.integration.gateway_process import free_ports

    ports = free_ports(3)
    with (state / "triton.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve-fixed", *map(str, ports), str(state / "triton-workspace")],
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
    main()
