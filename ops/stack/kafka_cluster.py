"""docker-compose's Kafka: three KRaft nodes with the production listener, made by `cumulus kafka init`.

The one-shot ``kafka-init`` service writes into the ``kafka-secrets`` volume everything the
brokers and the services need, so no secret is in the compose file:

- ``ca.pem`` and one peer certificate per broker (``kafka-N.pem`` and its PEM keystore), valid
  for the broker's container name and ``localhost``;
- ``kafka-N.properties``: node N of three (broker and controller each), SASL_SSL for clients and
  between brokers, mutual TLS on the controller listener, a deny-by-default authorizer,
  replication factor 3 and ``min.insync.replicas`` 2 (one broker may die without a write lost);
- ``credentials/<principal>``: a SCRAM password per principal (cumulus/kafka/security.py), and
  ``scram-args``, the storage tool's ``--add-scram`` arguments every broker formats with.

``topic-init`` then creates the topics and grants :data:`cumulus.kafka.security.ACCESS` as admin.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from cumulus.apikeys import write_private
from cumulus.kafka.security import ADMIN
from cumulus.tls import LocalPKI
from ops.stack import kafka_secure

BROKERS = 3
CLIENT_PORT, HOST_PORT, CONTROLLER_PORT = 9092, 9094, 9093
HOST_PORTS = tuple(19092 + i for i in range(BROKERS))
"""Where host tools reach broker N (127.0.0.1 only); containers use kafka-N:9092."""


def broker_name(node: int) -> str:
    return f"kafka-{node}"


def broker_properties(
    node: int, secrets: Path, admin_password: str, brokers: int = BROKERS
) -> dict[str, str]:
    """server.properties of node ``node`` (1-based) as it sees the secrets at ``secrets``."""
    name = broker_name(node)
    voters = ",".join(f"{n}@{broker_name(n)}:{CONTROLLER_PORT}" for n in range(1, brokers + 1))
    peers = [broker_name(n) for n in range(1, brokers + 1)]
    shared = kafka_secure.sasl_ssl_settings(
        secrets / f"{name}-keystore.pem", secrets / "ca.pem", admin_password, peers, ("sasl_ssl", "host")
    )
    return {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "listeners": f"SASL_SSL://:{CLIENT_PORT},HOST://:{HOST_PORT},CONTROLLER://:{CONTROLLER_PORT}",
        "advertised.listeners": f"SASL_SSL://{name}:{CLIENT_PORT},HOST://localhost:{HOST_PORTS[node - 1]}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,HOST:SASL_SSL,CONTROLLER:SSL",
        **shared,
        "log.dirs": "/var/lib/kafka/data",
        "auto.create.topics.enable": "false",
        "default.replication.factor": str(brokers),
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": str(brokers),
        "transaction.state.log.replication.factor": str(brokers),
        "transaction.state.log.min.isr": "2",
        "group.initial.rebalance.delay.ms": "0",
    }


def init_cluster(secrets: Path, brokers: int = BROKERS, services_uid: int | None = None) -> list[Path]:
    """Write every file of the module docstring into ``secrets`` (kept while valid); returns them.

    The broker image runs as its own user, so the brokers' files are made readable (the volume
    is mounted by the brokers and topic-init only); each service's password stays 0600, owned by
    ``services_uid`` when given (kafka-init runs as root to hand it over), and reaches that
    service alone (compose mounts one file per service)."""
    pki = LocalPKI(secrets)
    pki.ensure_ca()
    passwords = kafka_secure.ensure_credentials_in(secrets / "credentials")
    written = [pki.ca_cert]
    for node in range(1, brokers + 1):
        name = broker_name(node)
        keystore = kafka_secure.write_keystore(pki, name, (name, "localhost"))
        properties = secrets / f"{name}.properties"
        body = broker_properties(node, secrets, passwords[ADMIN], brokers)
        write_private(properties, "".join(f"{k}={v}\n" for k, v in body.items()))
        written += [keystore, properties]
    scram = secrets / "scram-args"
    args = [f"--add-scram={credential}" for credential in kafka_secure.scram_credentials(passwords)]
    write_private(scram, " ".join(shlex.quote(a) for a in args) + "\n")
    for path in (*written, scram):
        path.chmod(0o644)
    secrets.chmod(0o755)
    if services_uid is not None:
        for owned in (secrets / "credentials", *(secrets / "credentials").iterdir()):
            os.chown(owned, services_uid, services_uid)
    return [*written, scram]
