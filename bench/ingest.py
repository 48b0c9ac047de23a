"""Collector ingest: events/s from Kafka into ClickHouse, and event -> queryable freshness.

Starts a Kafka broker (unless ``--kafka`` names one) and the real collector
(``python -m services.collector``, embedded chDB) as processes, then:

1. **throughput**: loads ``--events`` realistic InferenceEvents (~1 KB each) into
   cumulus.inference.v1 first, starts the collector, and times the drain from the first inserted
   row to the last (``collector_rows_inserted_total`` on /metrics). Measures the collector alone:
   the producer is done before it starts.
2. **freshness**: while the collector runs, sends ``--rate`` events/s for ``--seconds`` with
   ``published_at`` stamped at send, then reads the capture lag (``ingested_at - published_at``)
   of those rows from the read API. ``ingested_at`` is when the insert ran; the insert's own
   duration (p99 on /metrics, reported as ``insert_p99_ms``) is added for the queryable bound.
3. checks exactly-once: rows inserted == uniqExact(event_id) == count() FINAL == events sent.

    .venv/bin/python bench/ingest.py            # 300k events, 20 s at 5k/s
    .venv/bin/python bench/ingest.py --quick    # 60k events, 6 s at 5k/s

Targets on the 2-core dev box: >= 20k events/s, p99 freshness <= 2 s. The broker, the collector
and this script share the cores. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.collector_stack import add_kafka_option, collector_stack  # noqa: E402
from cumulus.kafka import topics  # noqa: E402
from tests.integration.collector_process import CollectorProcess, inference_event, produce, stamped  # noqa: E402

TARGETS = {"events_per_s": 20_000.0, "freshness_p99_ms": 2000.0}
_ROWS_RE = re.compile(r'^collector_rows_inserted_total\{table="requests"\} ([0-9.e+]+)$', re.MULTILINE)
_INSERT_BUCKET_RE = re.compile(
    r'^collector_insert_seconds_bucket\{le="([^"]+)",table="requests"\} ([0-9.e+]+)$', re.MULTILINE
)


def metrics(collector: CollectorProcess) -> str:
    import urllib.request

    with urllib.request.urlopen(collector.base_url + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def rows_inserted(collector: CollectorProcess) -> float:
    match = _ROWS_RE.search(metrics(collector))
    return float(match.group(1)) if match else 0.0


def insert_p99_ms(collector: CollectorProcess) -> float:
    """Upper bound of the p99 insert duration from the histogram buckets."""
    buckets = [(float(le), float(n)) for le, n in _INSERT_BUCKET_RE.findall(metrics(collector))]
    total = max((n for _, n in buckets), default=0.0)
    for le, n in sorted(buckets):
        if total and n >= 0.99 * total:
            return le * 1000
    return float("nan")


def throughput(collector: CollectorProcess, bootstrap: str, workflow: str, events: int) -> dict[str, float]:
    records = (stamped(inference_event(workflow, i)) for i in range(events))
    t = time.monotonic()
    asyncio.run(produce(bootstrap, topics.INFERENCE.name, records))
    print(f"loaded {events} events in {time.monotonic() - t:.1f}s; starting the collector", file=sys.stderr)
    started = time.monotonic()
    collector.start()
    first_at, first_rows = None, 0.0
    while True:
        rows = rows_inserted(collector)
        now = time.monotonic()
        if rows and first_at is None:
            first_at, first_rows = now, rows
        if rows >= events:
            break
        if now - started > 600:
            raise RuntimeError(f"only {rows} of {events} rows after 600 s")
        time.sleep(0.05)
    assert first_at is not None
    drain_s = max(now - first_at, 1e-3)
    return {
        "events_per_s": round((events - first_rows) / drain_s, 1),
        "drain_s": round(drain_s, 2),
        "start_to_all_rows_s": round(now - started, 2),
    }


def freshness(
    collector: CollectorProcess, bootstrap: str, workflow: str, rate: float, seconds: float
) -> dict[str, float]:
    count = int(rate * seconds)
    records = (stamped(inference_event(workflow, i)) for i in range(count))
    asyncio.run(produce(bootstrap, topics.INFERENCE.name, records, rate_per_s=rate))
    counts = collector.wait_for_rows(workflow, count, timeout_s=60)
    lag = counts["freshness_ms"]
    return {
        "freshness_events": count,
        "freshness_p50_ms": lag["p50"],
        "freshness_p99_ms": lag["p99"],
        "freshness_max_ms": lag["max"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60k events, 6 s of paced traffic")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=5000.0, help="paced events/s of the freshness phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--redact",
        choices=("store", "none"),
        default="store",
        help="privacy.redact of the collector (store, the default, redacts every event before its row)",
    )
    add_kafka_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.events, args.seconds = 60_000, 6.0
    run = uuid.uuid4().hex[:6]
    settings = {"CUMULUS_PRIVACY__REDACT": args.redact}
    with collector_stack("bench-ingest-", args.kafka, settings) as (bootstrap, collector):
        results: dict[str, object] = {"events": args.events, "rate": args.rate, "redact": args.redact}
        results.update(throughput(collector, bootstrap, f"bench-{run}", args.events))
        results.update(freshness(collector, bootstrap, f"fresh-{run}", args.rate, args.seconds))
        results["insert_p99_ms"] = insert_p99_ms(collector)
        sent = {f"bench-{run}": args.events, f"fresh-{run}": int(args.rate * args.seconds)}
        counts = {wf: collector.capture_counts(wf) for wf in sent}
        exact = all(
            counts[wf]["inserted"] == counts[wf]["events"] == counts[wf]["final"] == n
            for wf, n in sent.items()
        )
        results["exactly_once"] = exact
        results["clean_stop"] = collector.stop() == 0
    results["targets"] = TARGETS
    results["ok"] = bool(
        exact
        and float(results["events_per_s"]) >= TARGETS["events_per_s"]  # type: ignore[arg-type]
        and float(results["freshness_p99_ms"]) <= TARGETS["freshness_p99_ms"]  # type: ignore[arg-type]
    )
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
