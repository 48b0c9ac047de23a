"""Triton on CPU: PyTriton's bundled tritonserver serving ``live``, ``small`` and every other student base.

Both models speak the TensorRT-LLM request interface (protocol.py) and are decoupled like
TensorRT-LLM's. Batching: PyTriton answers a Triton batch in lockstep (every yield of the infer
function sends one response to every request of the batch, and an error fails them all), which
cannot give per-request stream deltas, early finishes or errors. So Triton's own dynamic batcher is
off and ``BatchScheduler`` batches instead, with the same knobs (``triton.max_batch_size``,
``triton.batch_delay_us``); ``max_batch_size`` still goes into the model config so request shapes
are ``[batch, ...]`` as with TensorRT-LLM.

The Python backend stub links ``libpython3.11.so.1.0``: ``LD_LIBRARY_PATH`` must lead to the
running interpreter's (``sysconfig`` LIBDIR), or the stub picks up the system one and model init
fails with ``'_thread.RLock' object has no attribute '_recursion_count'``. ``serve`` sets it.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import sysconfig
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from cumulus.config import CumulusConfig, TritonConfig
from cumulus.engine.adapter_cache import AdapterCache
from cumulus.engine.backend import GenerationEngine
from cumulus.engine.multilora import MultiLora
from cumulus.errors import ConfigError, CumulusError
from cumulus.logs import get_logger
from cumulus.lora import AdapterRegistry
from cumulus.models import ensure_model, load_causal_lm
from services.inference.protocol import INPUTS, OUTPUTS, make_infer_fn
from services.inference.scheduler import BatchScheduler

log = get_logger("inference")


def serve(config: CumulusConfig, stop: threading.Event) -> None:
    """Load both models, run Triton until ``stop`` is set or Triton dies, then shut down cleanly."""
    from pytriton.model_config import ModelConfig
    from pytriton.triton import Triton
    from pytriton.triton import TritonConfig as PyTritonConfig

    triton_cfg = config.triton
    _check_ports_free(triton_cfg)
    _set_stub_library_path()
    _send_error_messages_without_traceback()
    log.info(
        "triton.starting",
        live=triton_cfg.live_model,
        small=triton_cfg.small_model,
        students=",".join(s.model for s in config.ladder),
        dtype=triton_cfg.serving_dtype,
        host=triton_cfg.host,
        grpc_port=triton_cfg.grpc_port,
        http_port=triton_cfg.http_port,
        metrics_port=triton_cfg.metrics_port,
    )
    started = time.monotonic()
    schedulers: dict[str, BatchScheduler] = {}
    served = config.served_models  # live, small, and every other student of the ladder
    for model_id in dict.fromkeys(served.values()):
        schedulers[model_id] = _start_scheduler(model_id, config)
    workspace = (config.state_dir / "triton" / str(os.getpid())).resolve()
    shutil.rmtree(workspace, ignore_errors=True)
    triton = Triton(
        config=PyTritonConfig(
            # Every endpoint on the configured host only (loopback for the local stack).
            grpc_address=triton_cfg.host,
            grpc_port=triton_cfg.grpc_port,
            http_address=triton_cfg.host,
            http_port=triton_cfg.http_port,
            metrics_address=triton_cfg.host,
            metrics_port=triton_cfg.metrics_port,
            exit_timeout_secs=10,
        ),
        workspace=workspace,
    )
    try:
        for name, model_id in served.items():
            triton.bind(
                model_name=name,
                infer_func=make_infer_fn(schedulers[model_id], triton_cfg.max_new_tokens_cap),
                inputs=INPUTS,
                outputs=OUTPUTS,
                config=ModelConfig(
                    batching=True, max_batch_size=triton_cfg.max_batch_size, batcher=None, decoupled=True
                ),
                strict=True,
            )
        triton.run()
        log.info("triton.ready", grpc=triton_cfg.grpc_url, seconds=round(time.monotonic() - started, 1))
        while not stop.wait(1.0):
            if not triton.is_alive():
                log.error("triton.died")
                break
    finally:
        log.info("triton.stopping")
        triton.stop()
        for scheduler in schedulers.values():
            scheduler.stop()
        shutil.rmtree(workspace, ignore_errors=True)
        log.info("triton.stopped")


def _start_scheduler(model_id: str, config: CumulusConfig) -> BatchScheduler:
    started = time.monotonic()
    model, tokenizer = load_causal_lm(ensure_model(model_id, config.models_dir), config.triton.serving_dtype)
    adapters = None
    if model_id in {s.model for s in config.ladder}:  # a student: the base of adapters
        adapters = AdapterCache(
            # A slot per row of a full batch (plus the base), so any batch fits in one pass.
            MultiLora(model, slots=config.triton.max_batch_size + 1),
            model_id=model_id,
            registry=AdapterRegistry(config.artifacts_dir),
            max_adapters=config.triton.lora_cache_size,
        )
    scheduler = BatchScheduler(
        GenerationEngine(model, tokenizer, adapters=adapters),
        name=model_id,
        max_batch_size=config.triton.max_batch_size,
        batch_delay_s=config.triton.batch_delay_us / 1e6,
    )
    scheduler.start()
    log.info(
        "model.loaded",
        model=model_id,
        dtype=config.triton.serving_dtype,
        parameters=sum(p.numel() for p in model.parameters()),
        seconds=round(time.monotonic() - started, 1),
    )
    return scheduler


def _check_ports_free(triton_cfg: TritonConfig) -> None:
    """Fail fast: tritonserver exits on a taken port, but PyTriton would wait minutes for it."""
    for name in ("grpc_port", "http_port", "metrics_port"):
        port = getattr(triton_cfg, name)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((triton_cfg.host, port))
            except OSError as exc:
                raise ConfigError(
                    f"triton.{name} {triton_cfg.host}:{port} is not available: {exc.strerror}",
                    fix=f"stop what listens there, or set CUMULUS_TRITON__{name.upper()}",
                ) from exc


def _set_stub_library_path() -> None:
    """Put this interpreter's libpython first on LD_LIBRARY_PATH (inherited by tritonserver and the stub)."""
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    if not (Path(libdir) / sysconfig.get_config_var("INSTSONAME")).is_file():
        raise ConfigError(
            f"this Python has no shared libpython in {libdir!r}; the Triton Python backend stub needs one",
            fix="build the venv from a Python with a shared library (e.g. Debian's python3.11)",
        )
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
    os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *current])


class _ErrorText:
    """Stands in for the ``traceback`` module inside ``pytriton.proxy.inference``.

    PyTriton sends an infer function's exception to the client as a full Python traceback. Our
    own errors are answers, not crashes: TensorRT-LLM clients match their exact text (the LoRA
    cache miss), so for CumulusError the client gets the message alone.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    @staticmethod
    def format_exception(exc: Any, value: Any = None, tb: Any = None, **kwargs: Any) -> list[str]:
        error = exc if value is None else value
        if isinstance(error, CumulusError):
            return [str(error)]
        return traceback.format_exception(exc, value, tb, **kwargs)

    @staticmethod
    def format_exc(*args: Any, **kwargs: Any) -> str:
        error = sys.exc_info()[1]
        if isinstance(error, CumulusError):  # logged by PyTriton as a warning: one line is enough
            return f"{type(error).__name__}: {error}"
        return traceback.format_exc(*args, **kwargs)


def _send_error_messages_without_traceback() -> None:
    from pytriton.proxy import inference

    if not hasattr(inference, "traceback"):
        raise ConfigError(
            "pytriton.proxy.inference no longer imports traceback; error texts would change",
            fix="check services/inference/server.py against the installed nvidia-pytriton",
        )
    inference.traceback = _ErrorText()
