"""Run every benchmark in bench/, one after another, and print one table of measured values vs targets.

Each benchmark runs as its own process (this interpreter, the current directory), in its quick
form unless ``--full``, with a timeout; its last stdout line is the JSON it reports. BENCHMARKS,
in bench/targets.py, is the one list of what runs and what each number should be. A benchmark
that fails, times out or prints no JSON is reported as such, with the tail of its stderr, and the
run goes on. Its whole output stays in ``<state_dir>/bench-logs/<name>.out`` and ``.err`` (tail
them to follow a run). The full report goes to ``<state_dir>/bench-report.json`` and, as one JSON
object, to the last line::

    .venv/bin/python bench/run_all.py                     # every benchmark, quick (~15 min here)
    .venv/bin/python bench/run_all.py --quick             # the same: quick is the default
    .venv/bin/python bench/run_all.py --full              # their full runs (about an hour)
    .venv/bin/python bench/run_all.py --only multilora,train_throughput
    .venv/bin/python bench/run_all.py --skip soak_collector --list

Exit status: 0 when every benchmark selected ran and printed its JSON, met targets or not (this is
a report, the table says what was missed); 1 when any crashed, timed out or printed no JSON;
with ``--strict``, 1 also when a target is missed (for a gate). On a timeout the benchmark gets
SIGINT, so that its own cleanup stops the brokers and servers it started, then SIGKILL after 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))  # run as a script, only bench/ is on sys.path

from bench.targets import BENCHMARKS, Benchmark, format_value  # noqa: E402
from cumulus.config import load_config  # noqa: E402

STOP_GRACE_S = 60.0
TAIL_LINES = 20


def lookup(result: dict[str, Any], key: str | tuple[str, ...]) -> Any:
    """The value at ``key`` in ``result``, None where the path is missing."""
    node: Any = result
    for part in (key,) if isinstance(key, str) else key:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def meets(value: Any, op: str, threshold: float | None) -> bool:
    if op == "==":
        return bool(value == threshold)
    if isinstance(value, bool) or not isinstance(value, int | float) or threshold is None:
        return False
    return value >= threshold if op == ">=" else value <= threshold  # NaN meets neither


def last_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object on the last non-empty line, None if there is none."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        value = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def evaluate(bench: Benchmark, result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: the measured value and whether it met the target (None: reported only)."""
    rows = []
    for target in bench.targets:
        value = lookup(result, target.key)
        met = None if target.op is None else value is not None and meets(value, target.op, target.threshold)
        rows.append({"metric": target.metric, "measured": value, "target": target.describe(), "met": met})
    return rows


def outcome(bench: Benchmark, returncode: int | None, stdout: str, stderr: str) -> dict[str, Any]:
    """A benchmark's entry in the report, from its exit (None: timed out) and its output."""
    result = last_json(stdout)
    if returncode is None:
        status = "timeout"
    elif returncode != 0:
        status = "failed"
    else:
        status = "ok" if result is not None else "no_json"
    entry: dict[str, Any] = {"status": status, "returncode": returncode}
    if status == "ok" and result is not None:
        entry["result"] = result
        entry["targets"] = evaluate(bench, result)
    else:
        entry["stderr_tail"] = "\n".join(stderr.splitlines()[-TAIL_LINES:])
    return entry


def run(bench: Benchmark, bench_dir: Path, full: bool, timeout_s: float, log_dir: Path) -> dict[str, Any]:
    """Run one benchmark to completion or timeout; its report entry."""
    args = bench.full_args if full else bench.quick_args
    out_path, err_path = log_dir / f"{bench.name}.out", log_dir / f"{bench.name}.err"
    print(f"{bench.name}: {' '.join(args)} (timeout {timeout_s:.0f} s, log {err_path})", file=sys.stderr)
    started = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(bench_dir / bench.script), *args], stdout=out, stderr=err
        )
        try:
            returncode: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            interrupt(proc)
            returncode = None
    entry = outcome(
        bench, returncode, out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    )
    entry.update(script=bench.script, args=list(args), seconds=round(time.monotonic() - started, 1))
    print(f"{bench.name}: {entry['status']} in {entry['seconds']:.0f} s", file=sys.stderr, flush=True)
    return entry


def interrupt(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT, so the benchmark's own cleanup stops what it started; SIGKILL whatever outlives the grace."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(descendants, timeout=5.0)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()


def table(report: dict[str, dict[str, Any]]) -> str:
    """benchmark | metric | measured | target | met, one line per target (one per failed benchmark)."""
    rows = [("benchmark", "metric", "measured", "target", "met")]
    for name, entry in report.items():
        if entry["status"] != "ok":
            rows.append((name, "-", failure(entry), "-", "NO"))
            continue
        for row in entry["targets"]:
            met = {None: "-", True: "yes", False: "NO"}[row["met"]]
            rows.append((name, row["metric"], format_value(row["measured"]), row["target"], met))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def failure(entry: dict[str, Any]) -> str:
    if entry["status"] == "timeout":
        return f"timed out after {entry['seconds']:.0f} s"
    return f"{'no JSON' if entry['status'] == 'no_json' else 'crashed'} (exit {entry['returncode']})"


def select(benchmarks: Sequence[Benchmark], only: list[str], skip: list[str]) -> list[Benchmark]:
    """The benchmarks named in ``only`` (all if empty) less those in ``skip``; ValueError on unknown names."""
    known = {bench.name for bench in benchmarks}
    unknown = sorted({*only, *skip} - known)
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [b for b in benchmarks if (not only or b.name in only) and b.name not in skip]


def listing(benchmarks: Sequence[Benchmark]) -> str:
    lines = []
    for bench in benchmarks:
        quick, full = " ".join(bench.quick_args), " ".join(bench.full_args) or "(no flags)"
        lines.append(f"{bench.name}  bench/{bench.script}  quick: {quick}  full: {full}")
        lines.extend(f"    {t.metric:<44} {t.describe():<18} {t.what}" for t in bench.targets)
    return "\n".join(lines)


def names(values: list[str]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


def main(
    argv: Sequence[str] | None = None,
    benchmarks: Sequence[Benchmark] = BENCHMARKS,
    bench_dir: Path = BENCH_DIR,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the quick runs (the default)")
    size.add_argument("--full", action="store_true", help="full runs instead of the quick ones")
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]", help="run only these")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME[,NAME]", help="leave these out")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and targets; run nothing")
    parser.add_argument("--timeout", type=float, help="seconds per benchmark (default: each one's own)")
    parser.add_argument("--strict", action="store_true", help="exit 1 also when a target is missed")
    parser.add_argument("--report", type=Path, help="default: <state_dir>/bench-report.json")
    args = parser.parse_args(argv)
    try:
        selected = select(benchmarks, names(args.only), names(args.skip))
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        print(listing(selected))
        return 0
    if args.report is None:
        args.report = load_config().state_dir / "bench-report.json"
    log_dir = args.report.parent / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    entries = {}
    for bench in selected:
        timeout_s = args.timeout or (bench.full_timeout_s if args.full else bench.quick_timeout_s)
        entries[bench.name] = run(bench, bench_dir, args.full, timeout_s, log_dir)
    crashed = [name for name, entry in entries.items() if entry["status"] != "ok"]
    missed = [
        f"{name}.{row['metric']}"
        for name, entry in entries.items()
        for row in entry.get("targets", [])
        if row["met"] is False
    ]
    report = {
        "mode": "full" if args.full else "quick",
        "benchmarks": entries,
        "crashed": crashed,
        "missed": missed,
    }
    args.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(table(entries))
    for name in crashed:
        print(f"\n{name} ({entries[name]['status']}), last lines of stderr:\n{entries[name]['stderr_tail']}")
    print(json.dumps(report, sort_keys=True))
    return 1 if crashed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
