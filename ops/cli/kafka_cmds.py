"""`cumulus kafka init | grant`: the secure Kafka of docker-compose (ops/stack/kafka_cluster.py).

The local stack does both itself (`cumulus up --secure`); these are for a cluster run elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.kafka import admin, security, topics
from ops.stack import kafka_cluster, kafka_secure


def register(sub: Any) -> None:
    kafka = sub.add_parser("kafka", help="a secure Kafka cluster: its certificates, credentials and grants")
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True)
    init = kafka_sub.add_parser(
        "init", help="certificates, broker configs and SCRAM passwords (kept while valid)"
    )
    init.add_argument(
        "--dir", type=Path, required=True, help="where to write them (docker-compose: a volume)"
    )
    init.add_argument("--brokers", type=int, default=kafka_cluster.BROKERS)
    init.add_argument("--services-uid", type=int, help="owner of the services' password files (as root)")
    init.set_defaults(handler=cmd_init)
    grant = kafka_sub.add_parser("grant", help="create the topics, then every principal's ACLs (as admin)")
    grant.set_defaults(handler=cmd_grant)


def cmd_init(args: argparse.Namespace, _: CumulusConfig) -> int:
    written = kafka_cluster.init_cluster(args.dir, args.brokers, args.services_uid)
    print(
        f"{len(written)} files in {args.dir} for {args.brokers} brokers; "
        f"passwords in {args.dir / 'credentials'}"
    )
    return 0


def cmd_grant(_: argparse.Namespace, config: CumulusConfig) -> int:
    cfg = config.kafka
    login = security.security_for(config, security.ADMIN)
    with security.using(login):
        created = asyncio.run(
            admin.ensure_topics(
                cfg.bootstrap_servers, topics.ALL_TOPICS, cfg.partitions, cfg.replication_factor
            )
        )
    granted = asyncio.run(kafka_secure.grant(cfg.bootstrap_servers, config, login))
    print(
        f"{len(topics.ALL_TOPICS)} topics ({len(created)} created), "
        f"{granted} ACLs for {len(security.ACCESS)} principals"
    )
    return 0
