"""A workflow's adapter versions, from the router's version book (services/router/versions.py):
`cumulus adapters history WORKFLOW [--tenant T] [--json]`, and the checks `cumulus rollout rollback
WORKFLOW --to VERSION` makes before it sends anything.

A version is named as `history` prints it (``v2``, or ``2``) or by its adapter id.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.errors import Conflict, InvalidArgument, NotFound
from cumulus.rollout_states import ACTIVE, PROMOTED
from ops.stack.probes import service_json


def workflow_versions(config: CumulusConfig, workflow: str, tenant: str = "") -> dict[str, Any]:
    """The router's ``GET /api/v1/workflows/{workflow}/versions``: versions and the current rollout."""
    router = config.router
    path = f"/api/v1/workflows/{urllib.parse.quote(workflow, safe='')}/versions"
    query = f"?tenant={urllib.parse.quote(tenant, safe='')}" if tenant else ""
    return service_json("router", router.host, router.health_port, path + query, config)


def cmd_history(args: argparse.Namespace, config: CumulusConfig) -> int:
    body = workflow_versions(config, args.workflow, args.tenant)
    print(json.dumps(body, indent=2) if args.json else render(body))
    return 0


def render(body: dict[str, Any]) -> str:
    """One line per version: its state, parent, dataset, gate and when it was trained."""
    lines = [f"{body['tenant']}/{body['workflow']}"]
    lines.append(
        f"{'version':<8} {'adapter':<28} {'state':<12} {'parent':<28} {'dataset':<22} {'gate':>6}  trained"
    )
    for row in body["versions"]:
        gate = f"{row['offline_score']:.3f}" if row["gate_passed"] or row["offline_score"] else "-"
        lines.append(
            f"{row['version']:<8} {row['adapter_id']:<28} {row['state']:<12} {row['parent'] or '-':<28} "
            f"{row['dataset_id'] or '-':<22} {gate:>6}  {row['trained_at'] or '-'}"
        )
        if row["reason"]:
            lines.append(f"{'':<8} {row['reason']}")
    if not body["versions"]:
        lines.append("(no adapter finished training for this workflow yet)")
    return "\n".join(lines)


def resolve_to(config: CumulusConfig, workflow: str, tenant: str, ref: str) -> str:
    """The adapter id of version ``ref`` of ``tenant``'s ``workflow``, checked the way the router
    checks it: known, passed its gate, and no other adapter's rollout in progress holds the workflow."""
    body = workflow_versions(config, workflow, tenant)
    rows = body["versions"]
    found = next((r for r in rows if ref in (r["adapter_id"], r["version"], r["version"][1:])), None)
    if found is None:
        known = ", ".join(f"{r['version']} ({r['adapter_id']})" for r in rows) or "none"
        raise NotFound(
            f"--to {ref}: {tenant}/{workflow} has no such version; its versions: {known}",
            fix=f"`cumulus adapters history {workflow} --tenant {tenant}` lists them",
        )
    if not found["gate_passed"]:
        raise InvalidArgument(
            "--to",
            f"{found['version']} ({found['adapter_id']}) was rejected by its offline gate and never served"
            + (f": {found['reason']}" if found["reason"] else ""),
            fix="pick a version whose state is not `rejected`",
        )
    rollout = body["rollout"]
    if rollout and rollout["state"] in ACTIVE and rollout["adapter_id"] != found["adapter_id"]:
        raise Conflict(
            f"{tenant}/{workflow} is held by the {rollout['state']} rollout of {rollout['adapter_id']}",
            fix=f"end it first with `cumulus rollout rollback {workflow} --tenant {tenant}`, then --to {ref}",
        )
    return str(found["adapter_id"])


def wait_served(config: CumulusConfig, workflow: str, tenant: str, adapter_id: str, timeout_s: float) -> bool:
    """True once the router serves ``adapter_id`` to all of the workflow's traffic."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rollout = workflow_versions(config, workflow, tenant)["rollout"] or {}
        if rollout.get("adapter_id") == adapter_id and rollout.get("state") == PROMOTED:
            return True
        time.sleep(0.3)
    return False
