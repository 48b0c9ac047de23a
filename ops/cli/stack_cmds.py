"""`cumulus up | down | status | logs | topics` — the local stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.errors import CumulusError
from cumulus.kafka import admin, topics
from cumulus.operators import ensure_dev_operator_token
from cumulus.tls import DEFAULT_HOSTS, LocalPKI
from ops.stack.local import COMPONENTS, LocalStack


def register(sub: Any) -> None:
    up = sub.add_parser("up", help="start Kafka, Triton and every service in the background")
    add_stack_flags(up)
    up.set_defaults(handler=cmd_up)
    down = sub.add_parser("down", help="stop everything `up` started")
    down.set_defaults(handler=cmd_down)
    status = sub.add_parser("status", help="health of every component")
    status.add_argument("--json", action="store_true", help='print {"components": {name: {...}}}')
    status.set_defaults(handler=cmd_status)
    restart = sub.add_parser("restart", help="restart one component of the running stack")
    restart.add_argument("name", choices=COMPONENTS)
    restart.set_defaults(handler=cmd_restart)
    logs = sub.add_parser("logs", help="show a component's log")
    logs.add_argument("name", choices=COMPONENTS)
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(handler=cmd_logs)
    prepare = sub.add_parser("prepare", help="fetch Kafka jars and convert the models once (all by default)")
    prepare.add_argument("--kafka", action="store_true", help="only the Kafka jars")
    prepare.add_argument("--models", action="store_true", help="only the live and small models")
    prepare.set_defaults(handler=cmd_prepare)
    tls = sub.add_parser("tls", help="certificates for the gateway's TLS")
    tls_sub = tls.add_subparsers(dest="tls_command", required=True)
    init = tls_sub.add_parser("init", help="make a CA, a gateway and a client certificate (kept while valid)")
    init.add_argument("--dir", type=Path, help="where (default <state_dir>/tls)")
    init.add_argument(
        "--hosts", default=",".join(DEFAULT_HOSTS), help="names and IPs the gateway certificate is valid for"
    )
    init.set_defaults(handler=cmd_tls_init)
    topics_cmd = sub.add_parser("topics", help="Kafka topics of the system")
    topics_sub = topics_cmd.add_subparsers(dest="topics_command", required=True)
    create = topics_sub.add_parser("create", help="create every cumulus topic (idempotent)")
    create.set_defaults(handler=cmd_topics_create)


def add_stack_flags(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--tls",
        dest="tls",
        action="store_const",
        const="tls",
        help="serve the gateway with TLS from a local CA in <state_dir>/tls (clients of the stack follow)",
    )
    tls.add_argument(
        "--mtls",
        dest="tls",
        action="store_const",
        const="mtls",
        help="as --tls, and clients must show a certificate",
    )
    parser.set_defaults(tls="off")
    parser.add_argument(
        "--secure",
        action="store_true",
        help="run Kafka with SASL_SSL (SCRAM), one principal per service and ACLs, as in production",
    )


def cmd_up(args: argparse.Namespace, config: CumulusConfig) -> int:
    stack = LocalStack(config, progress=lambda line: print(line, flush=True))
    endpoints = stack.up(tls=args.tls, secure=args.secure)
    key = stack.dev_key
    print("\nstack is up:")
    for name, endpoint in endpoints.items():
        print(f"  {name:<10} {endpoint}")
    if config.gateway.http_port:
        scheme = "http" if args.tls == "off" and config.gateway_server_tls is None else "https"
        door = f"{scheme}://{config.gateway.host}:{config.gateway.http_port}/v1"
        print(f"  {'openai':<10} {door}  (the gateway's OpenAI-compatible door: an SDK's base_url)")
    print(f"\ndev API key: {key}  (also in {stack.state_dir / 'dev-api-key'})")
    if args.tls != "off":
        pki = config.local_pki
        print(f"gateway TLS ({args.tls}): trust {pki.ca_cert}; client certificate {pki.client_cert}")
    token = ensure_dev_operator_token(stack.state_dir)
    print(f"operator token: in {stack.state_dir / 'operator-token'} (the CLI sends it)")
    print(f"dashboard: http://127.0.0.1:{config.collector.health_port}/dashboard#token={token}")
    print("logs: cumulus logs NAME    stop: cumulus down")
    return 0


def cmd_tls_init(args: argparse.Namespace, config: CumulusConfig) -> int:
    pki = LocalPKI(args.dir) if args.dir else config.local_pki
    hosts = tuple(h.strip() for h in args.hosts.split(",") if h.strip())
    if not hosts:
        raise CumulusError("--hosts names no host", fix="e.g. --hosts gateway,localhost,127.0.0.1")
    pki.ensure(hosts)
    print(f"CA {pki.ca_cert}\ngateway {pki.server_cert} (key {pki.server_key}) for {', '.join(hosts)}")
    print(f"client {pki.client_cert} (key {pki.client_key})")
    return 0


def cmd_down(_: argparse.Namespace, config: CumulusConfig) -> int:
    stopped = LocalStack(config).down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def cmd_status(args: argparse.Namespace, config: CumulusConfig) -> int:
    components = LocalStack(config).status()
    privacy = config.privacy.policies()
    if args.json:
        print(json.dumps({"components": components, "privacy": privacy}, indent=2, default=str))
    else:
        for name, info in components.items():
            mark = "healthy" if info["healthy"] else "DOWN"
            print(f"{name:<10} {mark:<8} {info['endpoint']:<28} {info['detail']}")
        print(privacy_line(privacy))
    return 0 if all(info["healthy"] for info in components.values()) else 1


def privacy_line(privacy: dict[str, Any]) -> str:
    """One line: where captured text is redacted, per tenant where it differs, and who opted out."""
    own = ", ".join(f"{name}={t['redact']}" for name, t in privacy["tenants"].items())
    out = ", ".join(privacy["opted_out"])
    days = privacy["retention_days"]
    kept = f"requests {days['requests_days']}d, datasets {days['datasets_days']}d"
    tenant_days = ", ".join(f"{name}={d}d" for name, d in privacy["tenant_retention_days"].items())
    return (
        f"privacy    redact={privacy['redact']}" + (f" (tenants: {own})" if own else "")
        + f", on_erasure={privacy['on_erasure']}, kept: {kept}" + (f" ({tenant_days})" if tenant_days else "")
        + (f"; NOT REDACTED: {out}" if out else "")
    )  # fmt: skip


def cmd_restart(args: argparse.Namespace, config: CumulusConfig) -> int:
    endpoint = LocalStack(config).restart(args.name)
    print(f"{args.name} restarted and healthy at {endpoint}")
    return 0


def cmd_logs(args: argparse.Namespace, config: CumulusConfig) -> int:
    path = LocalStack(config).table.log_path(args.name)
    if not path.exists():
        raise CumulusError(f"no log for {args.name} at {path}", fix="start the stack with `cumulus up`")
    tail = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), str(path)]
    return subprocess.call(tail, stdout=sys.stdout)


def cmd_topics_create(_: argparse.Namespace, config: CumulusConfig) -> int:
    cfg = config.kafka
    created = asyncio.run(
        admin.ensure_topics(cfg.bootstrap_servers, topics.ALL_TOPICS, cfg.partitions, cfg.replication_factor)
    )
    print(f"{len(topics.ALL_TOPICS)} topics present ({len(created)} created: {', '.join(created) or 'none'})")
    return 0


def cmd_prepare(args: argparse.Namespace, config: CumulusConfig) -> int:
    """Fetch what the local stack needs before its first start, so `up` itself is quick."""
    from ops.stack import kafka as kafka_stack

    everything = not (args.kafka or args.models)
    if args.kafka or everything:
        layout = kafka_stack.BrokerLayout.from_config(config.state_dir, config.kafka)
        print(f"kafka jars: {kafka_stack.ensure_jars(layout.libs_dir)}")
    if args.models or everything:
        from cumulus.models import ensure_model

        for model_id in dict.fromkeys(config.served_models.values()):
            print(f"model {model_id}: {ensure_model(model_id, config.models_dir)}")
    return 0
