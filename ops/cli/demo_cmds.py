"""`cumulus demo` — the closed loop, end to end, on the local stack (see ops/demo/runner.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from cumulus.config import CumulusConfig, load_config
from cumulus.errors import CumulusError
from cumulus.operators import ensure_dev_operator_token
from ops.cli.stack_cmds import add_stack_flags
from ops.demo import report
from ops.demo.profile import PROFILES, DemoProfile
from ops.demo.runner import DemoFailed, DemoRun
from ops.demo.workloads import WORKLOADS, workload
from ops.demo.workloads.base import Workload
from ops.stack.local import COMPONENTS, LocalStack


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="replay a workload and watch the system train, grade and roll out an adapter",
    )
    demo.add_argument(
        "--workload",
        default="bfcl",
        help="the application(s) to replay, one after the other on one stack: a name, a comma-"
        "separated list, or `all` (default bfcl). "
        + "; ".join(f"{name}: {w.summary}" for name, w in sorted(WORKLOADS.items())).replace("%", "%%"),
    )
    size = demo.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="profile",
        action="store_const",
        const="quick",
        help="(default) small steps: about 5-25 min a workload on 2 cores",
    )
    size.add_argument(
        "--full", dest="profile", action="store_const", const="full", help="production-like steps"
    )
    demo.set_defaults(profile="quick")
    demo.add_argument(
        "--report-dir",
        type=Path,
        help="where to write the JSON reports, demo-report[-WORKLOAD].json (default <state_dir>)",
    )
    demo.add_argument(
        "--drift",
        action="store_true",
        help="bfcl only: after promotion the app's traffic moves to other tools; watch drift, the "
        "rollback, fresh data and the next version",
    )
    demo.add_argument("--down", action="store_true", help="stop the stack afterwards if the demo started it")
    add_stack_flags(demo)
    demo.set_defaults(handler=cmd_demo)


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def cmd_demo(args: argparse.Namespace, config: CumulusConfig) -> int:
    profile = PROFILES[args.profile]
    chosen_workloads = _workloads(args.workload)  # a misspelt name fails before the stack starts
    if args.drift and "bfcl" not in {w.name for w in chosen_workloads}:
        raise CumulusError("--drift follows the bfcl workload's adapter", fix="add --workload bfcl")
    stack = LocalStack(config, progress=_say)
    running = [name for name in COMPONENTS if stack.table.alive(name)]
    started = False
    if running and len(running) < len(COMPONENTS):
        raise CumulusError(
            f"a partial stack is running ({', '.join(running)})",
            fix="`cumulus down`, then `cumulus demo` again",
        )
    if running:
        _say("using the running stack with its own settings (the demo profile applies to stacks it starts)")
    else:
        for name, value in profile.service_env().items():
            os.environ.setdefault(name, value)  # the user's own variables win
        config = load_config()
        stack = LocalStack(config, progress=_say)
        _say(f"starting the local stack with the {profile.name} demo profile")
        stack.up(tls=args.tls, secure=args.secure)
        started = True
    outcomes: dict[str, bool] = {}
    try:
        for chosen in chosen_workloads:
            folder = args.report_dir or config.state_dir
            outcomes[chosen.name] = _run_one(config, profile, chosen, folder, args.drift)
    finally:
        if started and args.down:
            _say(f"stopped: {', '.join(stack.down())}")
    if not started or not args.down:
        token = ensure_dev_operator_token(config.state_dir)
        print(
            "\nthe stack is still up: dashboard http://127.0.0.1:"
            f"{config.collector.health_port}/dashboard#token={token}   stop: cumulus down"
        )
    missed = [name for name, ok in outcomes.items() if not ok]
    if missed:
        print(f"cumulus: missed targets in {', '.join(missed)} (see the reports)", file=sys.stderr)
    return 1 if missed else 0


def _workloads(spec: str) -> list[Workload]:
    names = sorted(WORKLOADS) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise CumulusError("--workload names no workload", fix=f"one of: {', '.join(WORKLOADS)}, all")
    return [workload(name) for name in names]


def _run_one(
    config: CumulusConfig, profile: DemoProfile, chosen: Workload, folder: Path, drift: bool = False
) -> bool:
    """One workload's demo and its report; whether it met its targets (a stopped one did not)."""
    suffix = "" if chosen.name == "bfcl" else f"-{chosen.name}"
    path = folder / f"demo-report{suffix}.json"
    _say(f"=== workload {chosen.name}: {chosen.summary}")
    try:
        body = asyncio.run(
            DemoRun(config, profile, chosen, say=_say, drift=drift and chosen.name == "bfcl").run()
        )
    except DemoFailed as exc:
        report.write(exc.report, path)
        _say(f"{chosen.name}: stopped in its {exc.report['stopped_in']} stage ({exc}); see {path}")
        return False
    report.write(body, path)
    print(f"\nCumulus demo report, {chosen.name} ({path}):\n{report.table(body)}", flush=True)
    return all(body["targets_met"].values())
