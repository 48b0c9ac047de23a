"""`cumulus keys issue|list|revoke|rotate`: tenants' API keys and operators' tokens.

Both live hashed in the state dir (cumulus/apikeys.py, cumulus/operators.py); a key is shown once,
when it is issued, and named afterwards by its id (the first 12 hex digits of its sha256). The
gateway and the services read the files on every change, so an issued, revoked or expiring key
takes effect at once, open gateway streams included (at their next request).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from cumulus.apikeys import ApiKeyStore
from cumulus.config import CumulusConfig
from cumulus.errors import InvalidArgument, NotFound
from cumulus.operators import SCOPES, token_store

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="tenants' API keys and operators' tokens")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    issue = keys_sub.add_parser("issue", help="a new API key for a tenant (or --operator: a token)")
    who = issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", help="the tenant the API key calls the gateway as")
    who.add_argument("--operator", help="the name of the person or system an operator token is for")
    issue.add_argument("--scope", choices=SCOPES, default="read", help="an operator token's scope")
    issue.add_argument("--ttl", help="expire after this long: 3600, 90m, 12h, 30d (default: never)")
    issue.set_defaults(handler=cmd_issue)
    listing = keys_sub.add_parser("list", help="every key and token: id, owner, expiry (never the key)")
    listing.add_argument("--json", action="store_true", help='print {"keys": [...]}')
    listing.set_defaults(handler=cmd_list)
    revoke = keys_sub.add_parser("revoke", help="end a key or token now")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=cmd_revoke)
    rotate = keys_sub.add_parser(
        "rotate", help="a new key for the same owner; the old one ends after --grace"
    )
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", default="1h", help="how long the old key keeps working (default 1h)")
    rotate.set_defaults(handler=cmd_rotate)


def duration_s(text: str, field: str) -> float:
    """``3600``, ``90m``, ``12h``, ``30d`` in seconds; InvalidArgument naming ``field`` otherwise."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        raise InvalidArgument(field, f"{text!r} is not a duration", fix="write e.g. 3600, 90m, 12h or 30d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _stores(config: CumulusConfig) -> dict[str, ApiKeyStore]:
    return {"api key": ApiKeyStore(config.api_keys_path), "operator token": token_store(config.state_dir)}


def cmd_issue(args: argparse.Namespace, config: CumulusConfig) -> int:
    ttl = duration_s(args.ttl, "--ttl") if args.ttl else None
    stores = _stores(config)
    if args.tenant:
        key = stores["api key"].issue(args.tenant, ttl)
        print(f"API key for tenant {args.tenant}: {key}")
    else:
        key = stores["operator token"].issue(f"{args.scope}:{args.operator}", ttl)
        print(f"operator token for {args.operator} (scope {args.scope}): {key}")
    print("shown once: store it now" + (f"; it expires in {args.ttl}" if ttl else ""))
    return 0


def cmd_list(args: argparse.Namespace, config: CumulusConfig) -> int:
    now = time.time()
    rows = [
        {
            "id": r.key_id,
            "kind": kind,
            "owner": r.owner,
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "valid": r.valid(now),
        }
        for kind, store in _stores(config).items()
        for r in store.records()
    ]
    if args.json:
        print(json.dumps({"keys": rows}, indent=2))
        return 0
    print(f"{'id':<13} {'kind':<15} {'owner':<28} expires")
    for kind, store in _stores(config).items():
        for r in store.records():
            ends = "never"
            if r.expires_at is not None:
                ends = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.expires_at))
            ended = "" if r.valid(now) else " (expired)"
            print(f"{r.key_id:<13} {kind:<15} {r.owner:<28} {ends}{ended}")
    return 0


def cmd_revoke(args: argparse.Namespace, config: CumulusConfig) -> int:
    for kind, store in _stores(config).items():
        if store.revoke_id(args.key_id):
            print(f"{kind} {args.key_id} revoked")
            return 0
    raise NotFound(f"no key or token with id {args.key_id!r}", fix="see `cumulus keys list`")


def cmd_rotate(args: argparse.Namespace, config: CumulusConfig) -> int:
    grace = duration_s(args.grace, "--grace")
    for kind, store in _stores(config).items():
        key = store.rotate(args.key_id, grace)
        if key is not None:
            print(f"new {kind}: {key}\nshown once; {args.key_id} keeps working for {args.grace}")
            return 0
    raise NotFound(f"no key or token with id {args.key_id!r}", fix="see `cumulus keys list`")
