"""`cumulus adapters list [--json] | show ID [--json] | training [--json] | history WORKFLOW`.

``list`` and ``show`` read the registry directory (``<artifacts>/adapters/<workflow>/<id>/``, see
cumulus/lora/registry.py); ``show`` also verifies every file against the manifest's sha256 and
exits 1 when the adapter was modified. ``training`` asks the running trainer (``GET /status`` on
its health port) what it is training now and how far it got. ``history`` asks the router for a
workflow's versions (ops/cli/history_cmds.py).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from cumulus.artifacts import verify_dir
from cumulus.config import CumulusConfig
from cumulus.errors import ArtifactError
from cumulus.lora.registry import AdapterRegistry
from ops.cli.history_cmds import cmd_history
from ops.stack.probes import service_json


def register(sub: Any) -> None:
    adapters = sub.add_parser("adapters", help="trained LoRA adapters")
    adapters_sub = adapters.add_subparsers(dest="adapters_command", required=True)
    listing = adapters_sub.add_parser("list", help="every registered adapter, oldest first")
    listing.add_argument("--json", action="store_true", help='print {"adapters": [...]}')
    listing.set_defaults(handler=cmd_list)
    show = adapters_sub.add_parser("show", help="one adapter's manifest, verified against its files")
    show.add_argument("adapter_id")
    show.add_argument("--json", action="store_true", help="print the manifest and the verification as JSON")
    show.set_defaults(handler=cmd_show)
    training = adapters_sub.add_parser("training", help="the trainer's running job and last outcomes")
    training.add_argument("--json", action="store_true", help="print the trainer's /status as JSON")
    training.set_defaults(handler=cmd_training)
    history = adapters_sub.add_parser(
        "history", help="a workflow's versions: dataset, parent, gate score, rollout outcome, dates"
    )
    history.add_argument("workflow")
    history.add_argument(
        "--tenant", default="", help="whose workflow (needed when two tenants share its name)"
    )
    history.add_argument("--json", action="store_true", help="print the router's answer as JSON")
    history.set_defaults(handler=cmd_history)


def cmd_list(args: argparse.Namespace, config: CumulusConfig) -> int:
    summaries = [record.summary() for record in AdapterRegistry(config.artifacts_dir).records()]
    if args.json:
        print(json.dumps({"adapters": summaries}, indent=2))
        return 0
    print(f"{'adapter':<36} {'workflow':<24} {'status':<9} {'score':>6}  {'base model':<24} dataset")
    for s in summaries:
        score = "-" if s["offline_score"] is None else f"{s['offline_score']:.3f}"
        print(
            f"{s['adapter_id']:<36} {s['workflow']:<24} {s['status']:<9} {score:>6}  "
            f"{s['base_model']:<24} {s['dataset_id']}"
        )
    if not summaries:
        print(f"(no adapters in {config.artifacts_dir / 'adapters'})")
    return 0


def cmd_show(args: argparse.Namespace, config: CumulusConfig) -> int:
    record = AdapterRegistry(config.artifacts_dir).find(args.adapter_id)
    try:
        verify_dir(record.path)
        problem = None
    except ArtifactError as exc:
        problem = str(exc)
    manifest = record.manifest.to_json()
    if args.json:
        print(
            json.dumps(
                {"path": str(record.path), "verified": problem is None, "problem": problem, **manifest}
            )
        )
    else:
        summary = record.summary()
        gate = record.field("offline_gate") or {}
        lines = [f"{key:<14} {value}" for key, value in summary.items()]
        lines.append(f"{'path':<14} {record.path}")
        lines.append(f"{'gate':<14} threshold {gate.get('threshold')}, pass rate {gate.get('pass_rate')}")
        lines.append(f"{'metrics':<14} {json.dumps(record.field('metrics') or {}, sort_keys=True)}")
        lines.append(
            f"{'files':<14} " + ", ".join(f"{n} {d['sha256'][:12]}" for n, d in manifest["files"].items())
        )
        lines.append(
            f"{'verified':<14} " + ("ok (every sha256 matches)" if problem is None else f"NO: {problem}")
        )
        print("\n".join(lines))
    return 0 if problem is None else 1


def cmd_training(args: argparse.Namespace, config: CumulusConfig) -> int:
    trainer = config.trainer
    body = service_json("trainer", trainer.host, trainer.health_port, "/status", config)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(training_lines(body, time.time()), end="")
    return 0


def training_lines(body: dict[str, Any], now: float) -> str:
    """``GET /status`` of the trainer as text: which trainer answered, its job, its recent outcomes."""
    lines = []
    trainer = body.get("trainer")
    if trainer:  # so a reader can tell this trainer from another one (a second stack, a container)
        lines.append(
            f"trainer {trainer['host']} pid {trainer['pid']}, up {_age(now - trainer['started_at'])}"
        )
    job = body.get("job")
    if job:
        loss = "-" if job.get("loss") is None else f"{job['loss']:.4f}"
        updated = f", last progress {_age(now - job['updated_at'])} ago" if "updated_at" in job else ""
        lines.append(
            f"training {job['adapter_id']} ({job['workflow']}): {job['phase']} {100 * job['progress']:.0f}% "
            f"step {job['step']}/{job['total_steps']} loss {loss}{updated}"
        )
    else:
        lines.append("no job running")
    for outcome in body.get("recent", []):
        status, error = outcome.get("status", ""), outcome.get("error", "")
        lines.append(f"  {outcome['adapter_id']:<36} {status:<9} {error}")
    return "".join(f"{line}\n" for line in lines)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
