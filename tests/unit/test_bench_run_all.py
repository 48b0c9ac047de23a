"""bench/run_all.py: parsing benchmark output, judging targets, the table, and a run of fake benchmarks.

The table of benchmarks and targets itself is bench/targets.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import run_all
from bench.run_all import evaluate, last_json, lookup, meets, outcome
from bench.targets import BENCHMARKS, Benchmark, Target

BENCH_DIR = Path(run_all.__file__).resolve().parent
NOT_BENCHMARKS = {
    "__init__.py",
    "run_all.py",
    "targets.py",
    "pii_corpus.py",  # the labelled corpus redaction.py (and a unit test) score the detectors on
    "collector_stack.py",
    "fixed_triton.py",
    "bare_proxy.py",  # the floor gateway_overhead.py measures beside the gateway
}  # this runner, its table, and helpers other benches import

SPEED = Benchmark(
    "speed",
    "speed.py",
    (
        Target("ratio", ">=", 2, "x", "faster than the baseline"),
        Target(("latency", "p99_ms"), "<=", 5, "ms", "p99 latency"),
        Target("lost", "==", 0, "events", "nothing lost"),
        Target(("qwen2.5-0.5b", "tokens_per_s"), None, None, "tokens/s", "reported only"),
    ),
)


def test_the_table_names_every_benchmark_in_bench_and_nothing_else() -> None:
    scripts = [bench.script for bench in BENCHMARKS]
    on_disk = {path.name for path in BENCH_DIR.glob("*.py")} - NOT_BENCHMARKS
    assert sorted(scripts) == sorted(on_disk), "add the new benchmark (and its targets) to BENCHMARKS"
    assert len({bench.name for bench in BENCHMARKS}) == len(BENCHMARKS)


def test_last_json_is_the_object_on_the_last_non_empty_line() -> None:
    stdout = 'concurrency=1 {"p50": 1}\nprogress\n{"ratio": 2.5, "nested": {"a": 1}}\n\n'
    assert last_json(stdout) == {"ratio": 2.5, "nested": {"a": 1}}
    assert last_json("") is None
    assert last_json('{"ratio": 2}\ndone') is None  # JSON earlier, not last: not the report
    assert last_json("[1, 2]") is None


def test_lookup_follows_a_path_whose_keys_may_contain_dots() -> None:
    result = {"ratio": 3, "qwen2.5-0.5b": {"tokens_per_s": 41.5}}
    assert lookup(result, "ratio") == 3
    assert lookup(result, ("qwen2.5-0.5b", "tokens_per_s")) == 41.5
    assert lookup(result, ("qwen2.5-0.5b", "missing")) is None
    assert lookup(result, ("ratio", "deeper")) is None


@pytest.mark.parametrize(
    ("value", "op", "threshold", "met"),
    [
        (2.0, ">=", 2, True),
        (1.99, ">=", 2, False),
        (0.5, "<=", 0.5, True),
        (0.51, "<=", 0.5, False),
        (0, "==", 0, True),
        (3, "==", 0, False),
        (True, "==", True, True),
        (False, "==", True, False),
        (math.nan, ">=", 0, False),
        (math.nan, "<=", 1e9, False),
        ("fast", ">=", 1, False),
        (True, ">=", 1, False),  # a flag is not a number
    ],
)
def test_meets(value: object, op: str, threshold: float, met: bool) -> None:
    assert meets(value, op, threshold) is met


def test_a_target_with_an_unknown_comparison_is_refused() -> None:
    with pytest.raises(ValueError, match="op '>'"):
        Target("ratio", ">", 1, "x", "typo")


def test_evaluate_judges_each_target_and_a_missing_number_misses() -> None:
    rows = evaluate(SPEED, {"ratio": 2.4, "latency": {"p99_ms": 7.0}, "qwen2.5-0.5b": {"tokens_per_s": 40}})
    assert [(row["metric"], row["measured"], row["target"], row["met"]) for row in rows] == [
        ("ratio", 2.4, ">= 2 x", True),
        ("latency.p99_ms", 7.0, "<= 5 ms", False),
        ("lost", None, "== 0 events", False),
        ("qwen2.5-0.5b.tokens_per_s", 40, "reported", None),
    ]


@pytest.mark.parametrize(
    ("returncode", "stdout", "status"),
    [
        (0, '{"ratio": 3}\n', "ok"),
        (1, '{"ratio": 3}\n', "failed"),
        (None, "", "timeout"),
        (0, "done\n", "no_json"),
    ],
)
def test_outcome_status_and_stderr_tail(returncode: int | None, stdout: str, status: str) -> None:
    stderr = "\n".join(f"line {i}" for i in range(100))
    entry = outcome(SPEED, returncode, stdout, stderr)
    assert entry["status"] == status
    if status == "ok":
        assert entry["result"] == {"ratio": 3} and "stderr_tail" not in entry
    else:
        assert entry["stderr_tail"].splitlines() == [f"line {i}" for i in range(80, 100)]


def test_table_has_a_row_per_target_and_one_per_failed_benchmark() -> None:
    report = {
        "speed": {**outcome(SPEED, 0, '{"ratio": 2.5, "lost": 1}', ""), "seconds": 3.0},
        "broken": {**outcome(SPEED, 2, "", "Traceback"), "seconds": 1.0},
        "slow": {**outcome(SPEED, None, "", ""), "seconds": 600.0},
    }
    lines = [line.split() for line in run_all.table(report).splitlines()]
    assert lines[0] == ["benchmark", "metric", "measured", "target", "met"]
    assert lines[1] == ["speed", "ratio", "2.5", ">=", "2", "x", "yes"]
    assert lines[2] == ["speed", "latency.p99_ms", "missing", "<=", "5", "ms", "NO"]
    assert lines[3] == ["speed", "lost", "1", "==", "0", "events", "NO"]
    assert lines[4] == ["speed", "qwen2.5-0.5b.tokens_per_s", "missing", "reported", "-"]
    assert lines[5] == ["broken", "-", "crashed", "(exit", "2)", "-", "NO"]
    assert lines[6] == ["slow", "-", "timed", "out", "after", "600", "s", "-", "NO"]


def test_select_only_and_skip_and_unknown_names() -> None:
    names = [bench.name for bench in run_all.select(BENCHMARKS, ["multilora", "ingest"], [])]
    assert names == ["ingest", "multilora"]  # table order
    assert "ingest" not in [bench.name for bench in run_all.select(BENCHMARKS, [], ["ingest"])]
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) nope"):
        run_all.select(BENCHMARKS, ["nope"], [])


FAKES = {
    "good.py": 'import sys\nprint("warming up")\nprint("quick" if "--quick" in sys.argv else "full")\n'
    'print(\'{"ratio": 2.5, "latency": {"p99_ms": 9}}\')\n',
    "bad.py": 'import sys\nprint("about to fail", file=sys.stderr)\nraise SystemExit(3)\n',
    "slow.py": "import time\ntime.sleep(60)\n",
}
FAKE_BENCHMARKS = (
    Benchmark("good", "good.py", SPEED.targets[:2]),
    Benchmark("bad", "bad.py", SPEED.targets[:1]),
    Benchmark("slow", "slow.py", SPEED.targets[:1], quick_timeout_s=2.0),
)


@pytest.fixture
def fake_bench(tmp_path: Path) -> Path:
    for name, source in FAKES.items():
        (tmp_path / name).write_text(source)
    return tmp_path


def run_main(argv: list[str], bench_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = run_all.main(argv, benchmarks=FAKE_BENCHMARKS, bench_dir=bench_dir)
    return code, capsys.readouterr().out.splitlines()


def test_run_reports_every_benchmark_and_goes_on_after_a_crash(
    fake_bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = fake_bench / "state" / "bench-report.json"
    code, out = run_main(["--only", "good,bad", "--report", str(report_path)], fake_bench, capsys)
    assert code == 1  # a benchmark crashed
    report = json.loads(out[-1])
    assert report == json.loads(report_path.read_text())
    good, bad = report["benchmarks"]["good"], report["benchmarks"]["bad"]
    assert good["status"] == "ok" and good["args"] == ["--quick"]
    assert [row["met"] for row in good["targets"]] == [True, False]
    assert bad["status"] == "failed" and bad["returncode"] == 3 and bad["stderr_tail"] == "about to fail"
    assert report["crashed"] == ["bad"] and report["missed"] == ["good.latency.p99_ms"]
    assert "about to fail" in out
    assert (report_path.parent / "bench-logs" / "good.out").read_text().splitlines()[1] == "quick"


def test_missed_targets_exit_0_unless_strict(fake_bench: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = str(fake_bench / "report.json")
    assert run_main(["--only", "good", "--report", report], fake_bench, capsys)[0] == 0
    code, out = run_main(["--only", "good", "--quick", "--report", report], fake_bench, capsys)
    assert code == 0 and json.loads(out[-1])["benchmarks"]["good"]["args"] == ["--quick"]
    code, out = run_main(["--only", "good", "--full", "--strict", "--report", report], fake_bench, capsys)
    assert code == 1
    assert json.loads(out[-1])["benchmarks"]["good"]["args"] == []


def test_a_benchmark_past_its_timeout_is_interrupted(
    fake_bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_main(["--only", "slow", "--report", str(fake_bench / "r.json")], fake_bench, capsys)
    assert code == 1
    slow = json.loads(out[-1])["benchmarks"]["slow"]
    assert slow["status"] == "timeout" and slow["seconds"] < 30
    assert "KeyboardInterrupt" in slow["stderr_tail"]  # SIGINT first, so its own cleanup runs


def test_list_runs_nothing(fake_bench: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_main(["--list", "--skip", "slow"], fake_bench, capsys)
    assert code == 0
    assert out[0].startswith("good  bench/good.py  quick: --quick")
    assert not any(line.startswith("slow") for line in out)
    assert not (fake_bench / "bench-logs").exists()
