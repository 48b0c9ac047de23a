"""``python -m services.inference``: the CPU Triton host for models ``live`` and ``small``.

Configured like every service (cumulus.config): ``CUMULUS_STATE_DIR`` (model cache under
``<state_dir>/models``), ``CUMULUS_TRITON__LIVE_MODEL``, ``CUMULUS_TRITON__SMALL_MODEL``,
``CUMULUS_TRITON__GRPC_PORT`` / ``HTTP_PORT`` / ``METRICS_PORT``, ``CUMULUS_TRITON__DTYPE``.
Health is Triton's own: ``/v2/health/ready`` and per-model ready over HTTP and gRPC.
SIGTERM or SIGINT stops Triton (and its Python stubs) before the process exits.
"""

from __future__ import annotations

import os

# Before transformers is imported anywhere: these machines have no hub access, and a stray
# lookup should fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import signal
import sys
import threading

from cumulus.config import load_config
from cumulus.errors import CumulusError
from cumulus.logs import configure_logging, get_logger


def main() -> int:
    """Serve until SIGTERM/SIGINT; exit status 1 on a configuration or startup error."""
    log = get_logger("inference")
    try:
        config = load_config()
    except CumulusError as exc:
        configure_logging()
        log.error("config.invalid", error=str(exc))
        return 1
    configure_logging(config.log_format)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # progress bars are not log lines

    from services.inference.server import serve

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve(config, stop)
    except CumulusError as exc:
        log.error("triton.failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
