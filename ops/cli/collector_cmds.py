"""`cumulus workflows | candidates | nominate` — what the collector sees, through its read API.

The CLI never opens ClickHouse itself: with embedded chDB the collector's process owns the data
directory. It calls the collector's HTTP API on ``collector.host:collector.health_port``.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.errors import CumulusError, NotReady
from cumulus.operators import auth_headers

TIMEOUT_S = 120.0
"""Nominating exports a dataset, which can take a while on a big workflow."""


def register(sub: Any) -> None:
    workflows = sub.add_parser("workflows", help="traffic, cost and output shape of every workflow")
    workflows.add_argument("--json", action="store_true", help="print the list of workflows as JSON")
    workflows.add_argument("--window-h", type=float, default=None, help="hours of traffic (default: 24)")
    workflows.add_argument("--tenant", default="", help="only this tenant's workflows")
    workflows.set_defaults(handler=cmd_workflows)
    candidates = sub.add_parser("candidates", help="workflows nominated for fine-tuning")
    candidates.add_argument("--json", action="store_true", help="print the list of candidates as JSON")
    candidates.set_defaults(handler=cmd_candidates)
    nominate = sub.add_parser("nominate", help="export a workflow's dataset and send it to the trainer")
    nominate.add_argument("workflow")
    nominate.add_argument("--tenant", default="", help="needed when several tenants share the name")
    nominate.add_argument("--reason", default="", help="recorded with the candidate")
    nominate.add_argument("--json", action="store_true", help="print the candidate as JSON")
    nominate.set_defaults(handler=cmd_nominate)


def call_collector(
    config: CumulusConfig, method: str, path: str, body: Any = None, timeout_s: float = TIMEOUT_S
) -> Any:
    """One read-API call; translates HTTP and connection failures into CumulusErrors."""
    c = config.collector
    url = f"http://{c.host}:{c.health_port}{path}"
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **auth_headers(config.state_dir)}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
        except (json.JSONDecodeError, OSError):
            detail = {}
        raise CumulusError(
            detail.get("error") or f"HTTP {exc.code} from {url}", fix=detail.get("fix")
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise NotReady(
            f"the collector is not reachable at {url} ({exc})", fix="start the stack with `cumulus up`"
        ) from exc


def cmd_workflows(args: argparse.Namespace, config: CumulusConfig) -> int:
    query = {k: v for k, v in (("window_h", args.window_h), ("tenant", args.tenant)) if v}
    body = call_collector(config, "GET", "/api/v1/workflows?" + urllib.parse.urlencode(query))
    if args.json:
        print(json.dumps(body["workflows"], indent=2))
        return 0
    rows = [
        (
            w["tenant"],
            w["workflow"],
            str(w["requests"]),
            f"{w['error_rate']:.1%}",
            f"{w['p50_ms']:.0f}",
            f"{w['p95_ms']:.0f}",
            str(w["prompt_tokens"]),
            str(w["completion_tokens"]),
            f"${w['est_cost']:.4f}",
            f"{w['output_consistency']:.0%}",
            f"{w['template_stability']:.0%}",
        )
        for w in body["workflows"]
    ]
    header = (
        "TENANT",
        "WORKFLOW",
        "REQUESTS",
        "ERRORS",
        "P50_MS",
        "P95_MS",
        "TOK_IN",
        "TOK_OUT",
        "EST_COST",
        "SHAPE",
        "TEMPLATE",
    )
    _table(header, rows, empty=f"no traffic in the last {body['window_h']:g} h")
    return 0


def cmd_candidates(args: argparse.Namespace, config: CumulusConfig) -> int:
    body = call_collector(config, "GET", "/api/v1/candidates")
    if args.json:
        print(json.dumps(body, indent=2, default=str))
        return 0
    rows = [
        (
            str(c["occurred_at"])[:19],
            c["tenant"],
            c["workflow"],
            c["nominated_by"],
            c["base_model"],
            f"{c['train_examples']}/{c['holdout_examples']}",
            c.get("outcome", ""),
            c["reason"],
        )
        for c in body["candidates"]
    ]
    _table(
        ("WHEN", "TENANT", "WORKFLOW", "BY", "STUDENT", "TRAIN/HOLD", "OUTCOME", "REASON"),
        rows,
        empty="no candidates yet",
    )
    for curve in body.get("learning_curves", []):
        print(
            f"\nlearning curve {curve['tenant']}/{curve['workflow']} on {curve['student']}: "
            + curve_text(curve)
        )
    for waiting in body.get("waiting", []):
        print(f"\nwaiting {waiting['tenant']}/{waiting['workflow']}: {waiting['reason']}")
    for estimate in body.get("sufficiency", []):
        print(f"\nlabelled data {estimate['tenant']}/{estimate['workflow']}: {estimate['advice']}")
    return 0


def curve_text(curve: dict[str, Any]) -> str:
    """``186 ex -> 0.12 gold (rejected), 372 ex -> 0.41 gold (promoted)``."""
    return ", ".join(
        f"{p['examples']} ex -> {p['score']:.2f} {p['test']} ({p['outcome']})" for p in curve["points"]
    )


def cmd_nominate(args: argparse.Namespace, config: CumulusConfig) -> int:
    path = f"/api/v1/workflows/{urllib.parse.quote(args.workflow, safe='')}/nominate"
    candidate = call_collector(config, "POST", path, {"tenant": args.tenant, "reason": args.reason})
    if args.json:
        print(json.dumps(candidate, indent=2))
    else:
        print(
            f"nominated {candidate['workflow']} ({candidate['tenant']}): "
            f"candidate {candidate['candidate_id']}, "
            f"dataset {candidate['dataset_id']} ({candidate['train_examples']} train, "
            f"{candidate['holdout_examples']} holdout) at {candidate['dataset_uri']}"
        )
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    if not rows:
        print(empty)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
