"""What bench/run_all.py runs: every benchmark in bench/, its flags and timeouts, and its targets.

BENCHMARKS is the one list of what runs and what each number should be; a test checks that it
names every benchmark script in bench/ and nothing else, so a new benchmark lands here with its
targets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

OPS = (">=", "<=", "==")


@dataclass(frozen=True)
class Target:
    """A number in a benchmark's JSON (``key``: a name, or a path into nested objects) and its goal.

    ``op`` None means the number is reported with no target.
    """

    key: str | tuple[str, ...]
    op: str | None
    threshold: float | None
    unit: str
    what: str

    def __post_init__(self) -> None:
        if self.op is not None and self.op not in OPS:
            raise ValueError(f"target {self.metric}: op {self.op!r} is not one of {OPS} (or None: reported)")

    @property
    def metric(self) -> str:
        return self.key if isinstance(self.key, str) else ".".join(self.key)

    def describe(self) -> str:
        if self.op is None:
            return "reported"
        return f"{self.op} {format_value(self.threshold)} {self.unit}".rstrip()


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    targets: tuple[Target, ...]
    quick_args: tuple[str, ...] = ("--quick",)
    full_args: tuple[str, ...] = ()
    quick_timeout_s: float = 600.0
    full_timeout_s: float = 1800.0


SMOLLM2 = "smollm2-135m-instruct"
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "gateway_overhead",
        "gateway_overhead.py",
        (
            Target("p50_added_ms", "<=", 0.5, "ms", "p50 latency the gateway adds, lowest concurrency"),
            Target(
                "p50_added_over_floor_ms",
                "<=",
                0.25,
                "ms",
                "p50 the gateway adds beyond a bare grpc.aio proxy's (the floor), lowest concurrency",
            ),
            Target("p99_added_ms", "<=", 2.0, "ms", "p99 latency the gateway adds, lowest concurrency"),
            Target(
                "throughput_ratio",
                ">=",
                0.9,
                "x",
                "requests/s through the gateway / direct, highest concurrency",
            ),
        ),
        full_timeout_s=900.0,
    ),
    Benchmark(
        "ingest",
        "ingest.py",
        (
            Target("events_per_s", ">=", 20_000, "events/s", "collector drain, Kafka -> ClickHouse"),
            Target("freshness_p99_ms", "<=", 2000, "ms", "p99 capture lag, event published -> row inserted"),
            Target("exactly_once", "==", True, "", "rows inserted == distinct events == FINAL == sent"),
        ),
        quick_timeout_s=900.0,
    ),
    Benchmark(
        "redaction",
        "redaction.py",
        (
            Target(
                ("targets", "structured_recall>=0.99"),
                "==",
                True,
                "",
                "every structured kind, labelled corpus",
            ),
            Target(("targets", "structured_precision>=0.95"), "==", True, "", "every structured kind"),
            Target("mb_per_s", None, None, "MB/s", "redact() over the corpus, one core"),
        ),
    ),
    # No --quick: 5 kills, as the integration suite runs it; the full soak is its default 100.
    Benchmark(
        "soak_collector",
        "soak_collector.py",
        (
            Target("lost", "==", 0, "events", "sent - count() FINAL after the kill -9 loop"),
            Target("duplicated", "==", 0, "rows", "rows inserted - distinct events"),
        ),
        quick_args=("--kills", "5"),
    ),
    Benchmark(
        "train_throughput",
        "train_throughput.py",
        (Target("speedup_vs_peft", ">=", 2, "x", "LoraRecipe tokens/s / a plain PEFT training loop"),),
        quick_timeout_s=900.0,
    ),
    Benchmark(
        "multilora",
        "multilora.py",
        (
            Target("mixed_vs_single", ">=", 0.8, "x", "8 adapters in one batch / one adapter, tokens/s"),
            Target("mixed_vs_peft", ">=", 5, "x", "8 adapters in one batch / PEFT adapter_names, tokens/s"),
        ),
    ),
    Benchmark(
        "prefix_cache",
        "prefix_cache.py",
        (
            Target(
                "speedup",
                ">=",
                1.5,
                "x",
                "demo tool-calling traffic, prefix cache / whole prompts, requests/s",
            ),
            Target("cached_token_share", None, None, "", "prompt tokens served from the cache"),
            Target("same_outputs", None, None, "", "greedy outputs identical to whole-prompt prefill (bf16)"),
        ),
        quick_timeout_s=600.0,
    ),
    # No --quick and no stated targets: fewer MiniLM pairs for the quick run.
    Benchmark(
        "grader_throughput",
        "grader_throughput.py",
        tuple(
            Target((grader, "pairs_per_s"), None, None, "pairs/s", f"{grader} grader, CPU")
            for grader in ("label", "json", "tool_call", "semantic_minilm")
        ),
        quick_args=("--semantic-pairs", "128"),
        quick_timeout_s=300.0,
        full_timeout_s=600.0,
    ),
    # No --quick and no stated targets: SmolLM2 only, short answers for the quick run.
    Benchmark(
        "inference_throughput",
        "inference_throughput.py",
        tuple(
            Target(
                (SMOLLM2, f"batch_{batch}", "tokens_per_s"), None, None, "tokens/s", f"SmolLM2, batch {batch}"
            )
            for batch in (1, 8)
        ),
        quick_args=("--models", SMOLLM2, "--max-tokens", "16"),
        full_timeout_s=1200.0,
    ),
)


def format_value(value: object) -> str:
    """A measured value or a threshold as the table and ``--list`` print it."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if isinstance(value, int | str) else json.dumps(value)
