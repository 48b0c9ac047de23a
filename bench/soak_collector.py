"""Soak: kill -9 the collector over and over while events flow; print lost and duplicated counts.

Starts a broker (unless ``--kafka``) and the real collector, sends ``--rate`` events/s from a
thread, and ``--kills`` times starts the collector (half the time without waiting for it to be
ready), lets it run a random 0.2-2.5 s and SIGKILLs it. Then it starts it once more, waits for
every event, and compares: lost = sent - count() FINAL, duplicated = rows inserted (the
materialized view's sum) - distinct events. Both must be 0. Not part of CI (100 kills take
~10 minutes); the integration suite runs the same loop 5-8 times.

    .venv/bin/python bench/soak_collector.py --kills 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.collector_stack import add_kafka_option, collector_stack  # noqa: E402
from cumulus.kafka import topics  # noqa: E402
from tests.integration.collector_process import inference_event, produce, stamped  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s sent while killing")
    parser.add_argument("--seed", type=int, default=1)
    add_kafka_option(parser)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workflow = f"soak-{uuid.uuid4().hex[:6]}"
    with collector_stack("soak-collector-", args.kafka) as (bootstrap, collector):
        stop_sending = threading.Event()
        sent = [0]

        def events() -> Iterator[tuple[bytes, bytes]]:
            i = 0
            while not stop_sending.is_set():
                yield stamped(inference_event(workflow, i))
                i += 1
                sent[0] = i

        sender = threading.Thread(
            target=lambda: asyncio.run(
                produce(bootstrap, topics.INFERENCE.name, events(), rate_per_s=args.rate)
            )
        )
        sender.start()
        started = time.monotonic()
        try:
            for kill in range(1, args.kills + 1):
                collector.start(wait=rng.random() < 0.5)
                time.sleep(rng.uniform(0.2, 2.5))
                collector.kill()
                print(f"kill {kill}/{args.kills}: {sent[0]} events sent", file=sys.stderr)
        finally:
            stop_sending.set()
            sender.join()
        collector.start()
        counts = collector.wait_for_rows(workflow, sent[0], timeout_s=300)
        replays = collector.log_file.read_text(errors="replace").count("event=capture.replay ")
        collector.stop()
    result = {
        "kills": args.kills,
        "sent": sent[0],
        "final": counts["final"],
        "distinct_events": counts["events"],
        "rows_inserted": counts["inserted"],
        "lost": sent[0] - counts["final"],
        "duplicated": counts["inserted"] - counts["events"],
        "replayed_batches": replays,
        "seconds": round(time.monotonic() - started, 1),
    }
    result["ok"] = result["lost"] == 0 and result["duplicated"] == 0
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
