"""`cumulus erase --tenant T (--request R | --session S | --user U ... | --all)`: erase personal
data everywhere the system keeps it, and stop adapters trained on it from serving where the
tenant's policy says so.

The collector does the erasure (services/collector/erasure.py) and answers a receipt. Adapters
the receipt marks ``retire`` still serving are rolled back here, with the operator's signed
command (the collector cannot sign one): the router reinstates the previous version, and if that
one is tainted too it is rolled back in turn, until a clean version or live serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.errors import InvalidArgument, NotReady
from cumulus.kafka import codec
from cumulus.kafka.signing import CommandSigner
from cumulus.v1 import events_pb2
from ops.cli.collector_cmds import call_collector
from ops.cli.rollout_cmds import _operator, router_rollouts, send_command

RETIRE_WAIT_S = 30.0


def register(sub: Any) -> None:
    erase = sub.add_parser(
        "erase", help="erase a tenant's requests, sessions or users (or all of it) from every store"
    )
    erase.add_argument("--tenant", required=True, help="whose data")
    erase.add_argument("--request", action="append", default=[], help="a request id (repeatable)")
    erase.add_argument("--session", action="append", default=[], help="a session key (repeatable)")
    erase.add_argument("--user", action="append", default=[], help="an end user's id (repeatable)")
    erase.add_argument("--all", action="store_true", help="everything of the tenant")
    erase.add_argument("--json", action="store_true", help="print the receipt as JSON")
    erase.set_defaults(handler=cmd_erase)


def cmd_erase(args: argparse.Namespace, config: CumulusConfig) -> int:
    named = args.request or args.session or args.user
    if bool(named) == bool(args.all):
        raise InvalidArgument(
            "selector",
            "name what to erase with --request, --session or --user, or the whole tenant with --all alone",
            fix=f"e.g. `cumulus erase --tenant {args.tenant} --user USER_ID`",
        )
    body = {"tenant": args.tenant, "requests": args.request, "sessions": args.session, "users": args.user}
    # It may wait for a training job on an affected dataset to end (privacy.erasure_training_wait_s).
    wait_s = config.privacy.erasure_training_wait_s + 120
    receipt = call_collector(config, "POST", "/api/v1/erasures", {**body, "all": args.all}, timeout_s=wait_s)
    receipt["retired"] = retire(config, receipt)
    if args.json:
        print(json.dumps(receipt, indent=2))
        return 0
    print(summary(receipt))
    return 0


def retire(config: CumulusConfig, receipt: dict[str, Any]) -> list[str]:
    """Roll back every workflow whose serving adapter the receipt says to retire; what was done."""
    tainted = {a["adapter_id"] for a in receipt["adapters"]}
    workflows = sorted({a["workflow"] for a in receipt["adapters"] if a["action"].startswith("retire")})
    if not workflows:
        return []
    token_id, operator = _operator(config)
    signer = CommandSigner.from_file(config.command_key_file)
    done = []
    for workflow in workflows:
        deadline = time.monotonic() + RETIRE_WAIT_S
        serving = _serving(config, receipt["tenant"], workflow)
        while serving in tainted and time.monotonic() < deadline:
            command = events_pb2.RolloutCommand(
                meta=codec.new_meta(tenant=receipt["tenant"], workflow=workflow, producer="cli"),
                action=events_pb2.ROLLOUT_ACTION_ROLLBACK,
                adapter_id=serving,
                operator=operator,
                operator_token_id=token_id,
                reason=f"erasure {receipt['erasure_id']}: trained on erased data",
            )
            asyncio.run(send_command(config.kafka.bootstrap_servers, command, signer))
            done.append(f"{workflow}: rolled back {serving}")
            while _serving(config, receipt["tenant"], workflow) == serving and time.monotonic() < deadline:
                time.sleep(0.5)
            serving = _serving(config, receipt["tenant"], workflow)
        if serving in tainted:
            raise NotReady(
                f"{workflow} still serves tainted {serving} after {RETIRE_WAIT_S:.0f} s",
                fix="see `cumulus rollout list`, and roll it back with `cumulus rollout rollback`",
            )
    return done


def _serving(config: CumulusConfig, tenant: str, workflow: str) -> str:
    """The adapter of the workflow's rollout while it serves any traffic ('' when live serves all)."""
    for row in router_rollouts(config)["rollouts"]:
        if row["tenant"] == tenant and row["workflow"] == workflow and row["state"] != "rolled_back":
            return str(row["adapter_id"])
    return ""


def summary(receipt: dict[str, Any]) -> str:
    lines = [
        f"erasure {receipt['erasure_id']} of tenant {receipt['tenant']}: {receipt['requests_found']} requests"
    ]
    if receipt.get("note"):
        lines.append(receipt["note"])
    for table, counts in receipt["clickhouse"].items():
        if counts["removed"]:
            lines.append(
                f"  clickhouse {table}: {counts['removed']} rows removed, {counts['remaining']} left"
            )
    for dataset in receipt["datasets"]:
        lines.append(f"  dataset {dataset['workflow']}/{dataset['dataset_id']}: {dataset['removed']} removed")
    for adapter in receipt["adapters"]:
        lines.append(f"  adapter {adapter['adapter_id']} ({adapter['tainted_by']}): {adapter['action']}")
    lines += [f"  {done}" for done in receipt.get("retired", [])]
    until = receipt["kafka"]["raw_events_remain_until"]
    if until:
        lines.append(f"  Kafka keeps raw events until their retention ends (latest {max(until.values())})")
    return "\n".join(lines)
