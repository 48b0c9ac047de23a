"""`cumulus` — operate the local stack and, later, workflows, adapters and rollouts.

Each verb lives in its own module and registers itself here; errors of our own are printed as
one line naming the fix, with exit code 2 (usage/config) or 1 (runtime).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cumulus.config import CONFIG_ENV, CumulusConfig, load_config
from cumulus.errors import ConfigError, CumulusError
from cumulus.kafka import security as kafka_security
from ops.cli import (
    adapter_cmds,
    collector_cmds,
    demo_cmds,
    erase_cmds,
    judge_cmds,
    kafka_cmds,
    key_cmds,
    rollout_cmds,
    stack_cmds,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cumulus", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help=f"YAML config file (default: ${CONFIG_ENV} or ./cumulus.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stack_cmds.register(sub)
    judge_cmds.register(sub)
    collector_cmds.register(sub)
    adapter_cmds.register(sub)
    rollout_cmds.register(sub)
    key_cmds.register(sub)
    kafka_cmds.register(sub)
    demo_cmds.register(sub)
    erase_cmds.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.config:
            # Children (services started by `up`) must read the same file.
            os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
        config: CumulusConfig = load_config()
        kafka_security.configure(kafka_security.security_for(config, "cli"))
        return int(args.handler(args, config) or 0)
    except ConfigError as exc:
        print(f"cumulus: {exc}", file=sys.stderr)
        return 2
    except CumulusError as exc:
        print(f"cumulus: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cumulus: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
