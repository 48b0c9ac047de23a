"""The local broker with the production listener: SASL_SSL, one SCRAM principal per service, ACLs.

`cumulus up --secure` runs the single-node broker so that every client must speak TLS (the
broker's certificate comes from a CA under ``<state_dir>/kafka/tls``) and log in with
SCRAM-SHA-512 as its own principal (cumulus/kafka/security.py). Its authorizer denies whatever
no ACL allows, and :func:`grant` gives each principal exactly the topics and group
:data:`cumulus.kafka.security.ACCESS` lists. The controller listener (loopback) uses mutual TLS:
only a holder of the broker's certificate may speak to the controller.

SCRAM credentials are written into the metadata log when the storage is formatted, so a secure
broker keeps its data in its own directory (``data-secure``) next to the plaintext one's.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from cumulus.apikeys import write_private
from cumulus.config import CumulusConfig
from cumulus.errors import StackError
from cumulus.kafka import security
from cumulus.kafka.security import ACCESS, ADMIN, MECHANISM, PRINCIPALS
from cumulus.tls import LocalPKI
from ops.stack.kafka import BrokerLayout

BROKER_CERT = "kafka-broker"
"""The broker's certificate name; its subject is the controller listener's only (super) user."""

# Kafka's wire enums (org.apache.kafka.common.acl / resource): resource types, pattern, operations.
_TOPIC, _GROUP = 2, 3
_LITERAL = 3
_READ, _WRITE, _DESCRIBE = 3, 4, 8
_ALLOW = 3


def pki(state_dir: Path) -> LocalPKI:
    return LocalPKI(state_dir / "kafka" / "tls")


def ensure_credentials(state_dir: Path) -> dict[str, str]:
    """Every principal's password (made once, 0600 each), by principal."""
    return ensure_credentials_in(security.credentials_dir(state_dir))


def ensure_credentials_in(folder: Path) -> dict[str, str]:
    passwords = {}
    for principal in PRINCIPALS:
        path = folder / principal
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24) + "\n")
        passwords[principal] = path.read_text().strip()
    folder.chmod(0o700)
    return passwords


def sasl_ssl_settings(
    keystore: Path, truststore: Path, admin_password: str, super_users: list[str], listeners: tuple[str, ...]
) -> dict[str, str]:
    """The settings every secure broker shares, local or in docker-compose: SCRAM on the SASL_SSL
    ``listeners`` (the broker logs in to its peers as admin), mutual TLS on the controller
    listener, PEM key material, and an authorizer that denies whatever no ACL allows."""
    scram_login = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{admin_password}";'
    )
    return {
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        **{f"listener.name.{name}.{MECHANISM.lower()}.sasl.jaas.config": scram_login for name in listeners},
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(truststore),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": ";".join([f"User:{ADMIN}", *(f"User:CN={user}" for user in super_users)]),
    }


def write_keystore(authority: LocalPKI, name: str, hosts: tuple[str, ...]) -> Path:
    """``<name>-keystore.pem``, Kafka's PEM keystore (key, then chain) of a peer certificate."""
    cert, key = authority.issue_peer(name, hosts)
    keystore = authority.dir / f"{name}-keystore.pem"
    write_private(keystore, key.read_text() + cert.read_text())
    return keystore


def secure_properties(layout: BrokerLayout, state_dir: Path) -> dict[str, str]:
    """server.properties entries replacing the plaintext listener (see the module docstring)."""
    authority = pki(state_dir)
    authority.ensure_ca()
    keystore = write_keystore(authority, BROKER_CERT, (layout.host, "localhost", "127.0.0.1"))
    shared = sasl_ssl_settings(
        keystore, authority.ca_cert, ensure_credentials(state_dir)[ADMIN], [BROKER_CERT], ("sasl_ssl",)
    )
    return {
        "listeners": f"SASL_SSL://{layout.host}:{layout.port},CONTROLLER://{layout.host}:{layout.controller_port}",
        "advertised.listeners": f"SASL_SSL://{layout.bootstrap}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        **shared,
    }


def scram_credentials(passwords: dict[str, str]) -> list[str]:
    """Each principal's credential as the storage tool's ``--add-scram`` takes it."""
    return [
        f"{MECHANISM}=[name={principal},password={password}]" for principal, password in passwords.items()
    ]


def scram_format_args(state_dir: Path) -> list[str]:
    """The storage tool's ``--add-scram`` arguments: every principal's credential, set at format time."""
    args: list[str] = []
    for credential in scram_credentials(ensure_credentials(state_dir)):
        args += ["--add-scram", credential]
    return args


def admin_security(state_dir: Path) -> security.KafkaSecurity:
    password = ensure_credentials(state_dir)[ADMIN]
    return security.KafkaSecurity("SASL_SSL", ADMIN, password, pki(state_dir).ca_cert)


def acl_entries(config: CumulusConfig) -> list[tuple[int, str, str, int]]:
    """(resource type, name, principal, operation) of every grant :data:`ACCESS` implies."""
    entries: list[tuple[int, str, str, int]] = []
    for principal, access in ACCESS.items():
        user = f"User:{principal}"
        for spec in access.reads:
            entries += [(_TOPIC, spec.name, user, _READ), (_TOPIC, spec.name, user, _DESCRIBE)]
        for spec in access.writes:
            entries += [(_TOPIC, spec.name, user, _WRITE), (_TOPIC, spec.name, user, _DESCRIBE)]
        if access.group:
            section: Any = config
            for part in access.group.split("."):
                section = getattr(section, part)
            entries.append((_GROUP, section.group_id, user, _READ))
    return sorted(set(entries))


async def grant(bootstrap: str, config: CumulusConfig, login: security.KafkaSecurity) -> int:
    """Create every ACL of :func:`acl_entries` as ``login`` (a super user; idempotent); how many."""
    entries = acl_entries(config)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **login.client_kwargs())
    await admin.start()
    try:
        for resource_type, name, principal, operation in entries:
            request = CreateAclsRequest(resource_type, name, _LITERAL, principal, "*", operation, _ALLOW)
            # aiokafka has the wire request but no public admin method for it (0.14).
            response: Any = await admin._send_request(request)
            for error_code, message in ((r[0], r[1]) for r in response.creation_responses):
                if error_code:
                    raise StackError(
                        f"Kafka refused the ACL {principal} {operation} on {name}: {error_code} {message}",
                        fix="read the broker's log (cumulus logs kafka)",
                    )
    finally:
        await admin.close()
    return len(entries)
