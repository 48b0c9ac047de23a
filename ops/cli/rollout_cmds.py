"""`cumulus rollout list [--json]`, `cumulus rollout pause|resume|promote|rollback WORKFLOW [--tenant T]`
and `cumulus rollout rollback WORKFLOW --to VERSION` (an earlier version, at once).

``list`` asks the running router (``GET /api/v1/rollouts`` on its health port): the state it holds
is the one it acts on. The actions publish a RolloutCommand to cumulus.commands.v1 and return once
Kafka acknowledged it; the router applies it at its next batch (watch it with ``list``).

Workflows are tenant-scoped and two tenants may name theirs alike, so a command names the tenant
too: ``--tenant``, or else the only tenant the router holds a rollout of WORKFLOW for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiokafka import errors as kafka_errors

from cumulus.config import CumulusConfig
from cumulus.errors import InvalidArgument, NotFound, NotReady, PermissionDenied
from cumulus.kafka import codec, topics
from cumulus.kafka.producer import new_producer
from cumulus.kafka.signing import HEADER, CommandSigner
from cumulus.operators import TOKEN_ENV, client_token, token_identity
from cumulus.v1 import events_pb2
from ops.cli.history_cmds import resolve_to, wait_served
from ops.stack.probes import service_json

ACTIONS = {
    "pause": events_pb2.ROLLOUT_ACTION_PAUSE,
    "resume": events_pb2.ROLLOUT_ACTION_RESUME,
    "promote": events_pb2.ROLLOUT_ACTION_PROMOTE,
    "rollback": events_pb2.ROLLOUT_ACTION_ROLLBACK,
}
HELP = {
    "pause": "freeze the rollout at its current weight (gates stop)",
    "resume": "continue a paused rollout from its step, on fresh verdicts",
    "promote": "send 100%% of the workflow's traffic to the candidate now",
    "rollback": "restore the route in force before the rollout",
}


def register(sub: Any) -> None:
    rollout = sub.add_parser("rollout", help="adapter rollouts (the router)")
    rollout_sub = rollout.add_subparsers(dest="rollout_command", required=True)
    listing = rollout_sub.add_parser(
        "list", help="every rollout by tenant and workflow: state, weight, evidence"
    )
    listing.add_argument("--json", action="store_true", help='print {"rollouts": [...]}')
    listing.set_defaults(handler=cmd_list)
    for name in ACTIONS:
        action = rollout_sub.add_parser(name, help=HELP[name])
        action.add_argument("workflow")
        action.add_argument("--adapter", default="", help="only if this adapter is the workflow's rollout")
        action.add_argument(
            "--tenant", default="", help="whose workflow (default: the only tenant with a rollout of it)"
        )
        action.add_argument("--reason", default="", help="why (kept on the rollout event)")
        if name == "rollback":
            action.add_argument(
                "--to",
                default="",
                metavar="VERSION",
                help="serve this earlier ready version (v2, or its adapter id) instead of the incumbent",
            )
        action.set_defaults(handler=cmd_action, action=name)


def cmd_list(args: argparse.Namespace, config: CumulusConfig) -> int:
    body = router_rollouts(config)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(render(body["rollouts"]))
    return 0


def router_rollouts(config: CumulusConfig) -> dict[str, Any]:
    """The router's ``GET /api/v1/rollouts``: ``{"rollouts": [row, ...]}`` (services/router/__main__.py)."""
    router = config.router
    return service_json("router", router.host, router.health_port, "/api/v1/rollouts", config)


def render(rows: list[dict[str, Any]]) -> str:
    """Rollouts as a table a person reads: the last decision's key numbers on each line."""
    lines = [f"{'tenant':<16} {'workflow':<24} {'adapter':<28} {'state':<11} {'weight':>6}  evidence"]
    for row in rows:
        ev = row["evidence"]
        numbers = (
            f"n={ev['n']:.0f} pass={ev['pass_rate']:.3f} lcb={ev['lower_bound']:.3f} "
            f"err={ev['error_rate']:.3f}"
            if "n" in ev
            else ""
        )
        lines.append(
            f"{row['tenant']:<16} {row['workflow']:<24} {row['adapter_id']:<28} {row['state']:<11} "
            f"{100 * row['weight']:>5.1f}%  {numbers}{gold_text(row.get('gold') or {})} "
            f"step_verdicts={row['step_verdicts']} ({row['reason']})"
        )
        lines += [
            f"{'':<16} drift {d['signal']} {d['severity']} -> {d['action']}: {d['detail']}"
            for d in row.get("drift") or []
        ]
    if not rows:
        lines.append("(no rollout yet)")
    return "\n".join(lines)


def gold_text(gold: dict[str, float]) -> str:
    """`` gold: candidate 0.80 [0.70, 0.88] vs live 0.20 [0.12, 0.31], n=60`` (empty without gold)."""
    if not gold.get("gold_n"):
        return ""
    sides = []
    for side in ("candidate", "live"):
        if f"{side}_gold_accuracy" in gold:
            low, high = gold[f"{side}_gold_low"], gold[f"{side}_gold_high"]
            sides.append(f"{side} {gold[f'{side}_gold_accuracy']:.2f} [{low:.2f}, {high:.2f}]")
    return f" gold: {' vs '.join(sides)}, n={gold['gold_n']:.0f}"


def cmd_action(args: argparse.Namespace, config: CumulusConfig) -> int:
    token_id, operator = _operator(config)
    tenant = args.tenant or tenant_of(args.workflow, _rollouts_for_tenant(config)["rollouts"])
    command = events_pb2.RolloutCommand(
        meta=codec.new_meta(tenant=tenant, workflow=args.workflow, producer="cli"),
        action=ACTIONS[args.action],
        adapter_id=args.adapter,
        operator=operator,
        operator_token_id=token_id,
        reason=args.reason,
    )
    to = getattr(args, "to", "")
    if to:
        command.to_adapter_id = resolve_to(config, args.workflow, tenant, to)
    signer = CommandSigner.from_file(config.command_key_file)
    asyncio.run(send_command(config.kafka.bootstrap_servers, command, signer))
    if not to:
        print(
            f"{args.action} sent for workflow {args.workflow} of tenant {tenant} (see `cumulus rollout list`)"
        )
        return 0
    if not wait_served(config, args.workflow, tenant, command.to_adapter_id, timeout_s=30):
        raise NotReady(
            f"rollback to {to} sent, but the router has not served {command.to_adapter_id} within 30 s",
            fix="see `cumulus rollout list`; a refused command is dead-lettered with the reason",
        )
    print(f"{command.to_adapter_id} ({to}) serves all of {tenant}/{args.workflow} again")
    return 0


def tenant_of(workflow: str, rows: list[dict[str, Any]]) -> str:
    """The one tenant with a rollout of ``workflow`` among the router's ``rows``; refuses to guess."""
    tenants = sorted({row["tenant"] for row in rows if row["workflow"] == workflow})
    if not tenants:
        raise NotFound(
            f"the router holds no rollout of workflow {workflow!r}",
            fix="check the name with `cumulus rollout list`, or name the tenant with --tenant",
        )
    if len(tenants) > 1:
        raise InvalidArgument(
            "--tenant",
            f"tenants {', '.join(repr(t) for t in tenants)} each have a rollout of workflow {workflow!r}",
            fix=f"say whose with --tenant, e.g. --tenant {tenants[0]}",
        )
    return str(tenants[0])


def _rollouts_for_tenant(config: CumulusConfig) -> dict[str, Any]:
    try:
        return router_rollouts(config)
    except NotReady as exc:
        raise NotReady(
            f"{exc.message}; it tells which tenant's workflow the command is for",
            fix="name the tenant with --tenant, or start the router (`cumulus status`)",
        ) from exc


async def send_command(
    bootstrap_servers: str, command: events_pb2.RolloutCommand, signer: CommandSigner
) -> None:
    """Publish one signed command and wait for Kafka's acknowledgement."""
    producer = new_producer(bootstrap_servers, "cli", linger_ms=0, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(producer.start(), 10.0)
        command.meta.published_at.CopyFrom(codec.timestamp_now())
        key = codec.encode_key(command.meta.tenant, command.meta.workflow)
        value = codec.encode_event(command)
        await asyncio.wait_for(
            producer.send_and_wait(
                topics.COMMANDS.name, value, key=key, headers=[(HEADER, signer.sign(key, value))]
            ),
            15.0,
        )
    except (kafka_errors.KafkaError, TimeoutError, OSError) as exc:
        raise NotReady(
            f"Kafka at {bootstrap_servers} did not take the command: {exc!r}", fix="`cumulus status`"
        ) from exc
    finally:
        await producer.stop()


def _operator(config: CumulusConfig) -> tuple[str, str]:
    """(token id, name) of the operator token this CLI sends: the router acts only on those."""
    token = client_token(config.state_dir)
    identity = token_identity(config.state_dir, token) if token else None
    fix = f"send an operator token: export {TOKEN_ENV}=... (`cumulus keys issue --operator NAME`)"
    if identity is None:
        raise PermissionDenied("rollout commands need a valid operator token; none was found", fix=fix)
    token_id, scope, name = identity
    if scope == "read":
        raise PermissionDenied(f"operator token {token_id} of {name!r} is read-only", fix=fix)
    return token_id, name
