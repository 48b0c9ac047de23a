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
from ops.demo import report
from ops.demo.profile import PROFILES
from ops.demo.runner import DemoFailed, DemoRun
from ops.stack.local import COMPONENTS, LocalStack


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="replay a BFCL workload and watch the system train, grade and roll out an adapter",
    )
    size = demo.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", dest="profile", action="store_const", const="quick", help="(default) ~15 min"
    )
    size.add_argument(
        "--full", dest="profile", action="store_const", const="full", help="production-like steps"
    )
    demo.set_defaults(profile="quick")
    demo.add_argument(
        "--report", type=Path, help="where to write the JSON report (default <state_dir>/demo-report.json)"
    )
    demo.add_argument("--down", action="store_true", help="stop the stack afterwards if the demo started it")
    demo.set_defaults(handler=cmd_demo)


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def cmd_demo(args: argparse.Namespace, config: CumulusConfig) -> int:
    profile = PROFILES[args.profile]
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
        stack.up()
        started = True
    path = args.report or config.state_dir / "demo-report.json"
    try:
        body = asyncio.run(DemoRun(config, profile, say=_say).run())
    except DemoFailed as exc:
        report.write(exc.report, path)
        _say(f"the demo stopped in its {exc.report['stopped_in']} stage; what happened so far: {path}")
        raise
    finally:
        if started and args.down:
            _say(f"stopped: {', '.join(stack.down())}")
    report.write(body, path)
    print(f"\nCumulus demo report ({path}):\n{report.table(body)}", flush=True)
    if not started or not args.down:
        print(
            "\nthe stack is still up: dashboard http://127.0.0.1:"
            f"{config.collector.health_port}/dashboard   stop: cumulus down"
        )
    ok = body["rollout_final_state"] == "promoted" and body["bad_adapter_final_state"] == "rolled_back"
    if not ok:
        print("cumulus: the loop did not end as expected (see the report)", file=sys.stderr)
    return 0 if ok else 1
