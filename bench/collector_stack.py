"""The broker and collector that the collector benches (ingest.py, soak_collector.py) run against."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.integration.collector_process import CollectorProcess, start_at_end
from tests.integration.kafka_fixtures import start_broker


def add_kafka_option(parser: argparse.ArgumentParser) -> None:
    """``--kafka``, the ``kafka`` of :func:`collector_stack`: a running broker, or empty to start one."""
    parser.add_argument(
        "--kafka", default="", help="bootstrap servers of a running broker (default: start one)"
    )


@contextlib.contextmanager
def collector_stack(
    prefix: str, kafka: str, settings: dict[str, str] | None = None
) -> Iterator[tuple[str, CollectorProcess]]:
    """``(bootstrap, collector)`` in a temporary directory named ``prefix...``; all gone on exit.

    A broker is started unless ``kafka`` names a running one. The collector is not started (each
    bench starts and stops it its own way); candidate detection is off so that only capture costs
    count, and its group starts at the end of the captured topics so that a shared broker's older
    events are neither drained nor counted. On exit the collector is killed, then the broker stops.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, contextlib.ExitStack() as cleanup:
        bootstrap = kafka
        if not bootstrap:
            broker = start_broker(Path(tmp) / "kafka")
            cleanup.callback(broker.stop)
            bootstrap = broker.bootstrap
        collector = CollectorProcess(
            Path(tmp) / "collector",
            bootstrap,
            settings={"CUMULUS_COLLECTOR__DETECTION__ENABLED": "false", **(settings or {})},
        )
        cleanup.callback(collector.kill)
        asyncio.run(start_at_end(bootstrap, collector.group_id))
        yield bootstrap, collector
