"""How a process authenticates to Kafka, and what each principal may do there.

Plaintext by default (the local stack on loopback). With ``kafka.security_protocol: SASL_SSL``, or
on a local stack started with `cumulus up --secure`, every client speaks TLS to the brokers
(trusting ``kafka.ssl_cafile``) and logs in with SCRAM-SHA-512 as its own principal: each service
as its name (``gateway``, ``collector`` ...), the CLI as ``cli``. The password is read from
``kafka.sasl_password_file`` (default ``<state_dir>/kafka/credentials/<principal>``, 0600).

A process calls :func:`configure` once at start (cumulus.service does it for every service, the
CLI for itself); every Kafka client in the code base is built with :func:`client_kwargs`, so no
call site can forget the credentials. :data:`ACCESS` is the least privilege each principal
needs; the local stack and docker-compose grant exactly that (ops/stack/kafka_secure.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cumulus.errors import ConfigError
from cumulus.kafka import topics

if TYPE_CHECKING:
    from cumulus.config import CumulusConfig

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
"""The super user: creates topics and grants access. Only `cumulus up` and topic-init use it."""


@dataclass(frozen=True)
class Access:
    """What one principal may do: read (and describe) ``reads``, write ``writes``, use its group."""

    reads: tuple[topics.TopicSpec, ...]
    writes: tuple[topics.TopicSpec, ...]
    group: str = ""
    """The config section whose ``group_id`` names its consumer group (dotted), empty for none."""


ACCESS: dict[str, Access] = {
    "gateway": Access(
        reads=(topics.ROUTES,), writes=(topics.INFERENCE, topics.FEEDBACK, topics.SHADOW, topics.DEADLETTER)
    ),
    "collector": Access(
        reads=(
            topics.INFERENCE,
            topics.FEEDBACK,
            topics.VERDICTS,
            topics.ADAPTERS,
            topics.ROLLOUTS,
            topics.DRIFT,
            topics.SHADOW,
        ),
        writes=(topics.CANDIDATES, topics.DRIFT, topics.DEADLETTER),
        group="collector.capture",
    ),
    "trainer": Access(
        reads=(topics.CANDIDATES,), writes=(topics.ADAPTERS, topics.DEADLETTER), group="trainer"
    ),
    "judge": Access(
        reads=(topics.SHADOW, topics.FEEDBACK), writes=(topics.VERDICTS, topics.DEADLETTER), group="judge"
    ),
    "router": Access(
        reads=(
            topics.ADAPTERS,
            topics.VERDICTS,
            topics.COMMANDS,
            topics.ROLLOUTS,
            topics.ROUTES,
            topics.DRIFT,
        ),
        writes=(topics.ROUTES, topics.ROLLOUTS, topics.DEADLETTER),
        group="router",
    ),
    # Operators' tooling: reads everything (the demo watches every topic), writes only commands,
    # which the router still checks for a signature and a valid operator token.
    "cli": Access(reads=topics.ALL_TOPICS, writes=(topics.COMMANDS,)),
}
PRINCIPALS = (ADMIN, *ACCESS)


@dataclass(frozen=True)
class KafkaSecurity:
    """One process's way into Kafka (see the module docstring)."""

    protocol: str = "PLAINTEXT"
    username: str = ""
    password: str = ""
    cafile: Path | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka producer, consumer or admin client."""
        if self.protocol == "PLAINTEXT":
            return {}
        context = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        return {
            "security_protocol": self.protocol,
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
            "ssl_context": context,
        }


_current = KafkaSecurity()


def configure(security: KafkaSecurity) -> None:
    """Make ``security`` what every Kafka client this process builds from now on uses."""
    global _current
    _current = security


def client_kwargs() -> dict[str, Any]:
    return _current.client_kwargs()


@contextmanager
def using(security: KafkaSecurity) -> Iterator[None]:
    """Clients built inside the block use ``security`` (the local stack's setup runs as admin)."""
    global _current
    before, _current = _current, security
    try:
        yield
    finally:
        _current = before


def local_secure_marker(state_dir: Path) -> Path:
    """Left by `cumulus up --secure`: the local broker speaks SASL_SSL (ops/stack/kafka_secure.py)."""
    return state_dir / "kafka" / "secure"


def credentials_dir(state_dir: Path) -> Path:
    return state_dir / "kafka" / "credentials"


def local_ca(state_dir: Path) -> Path:
    return state_dir / "kafka" / "tls" / "ca.pem"


def security_for(config: CumulusConfig, principal: str) -> KafkaSecurity:
    """How ``principal`` reaches Kafka under ``config`` (plaintext, or SASL_SSL as that principal)."""
    kafka = config.kafka
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT" and local_secure_marker(config.state_dir).exists():
        protocol = "SASL_SSL"
    if protocol == "PLAINTEXT":
        return KafkaSecurity()
    username = kafka.sasl_username or principal
    password_file = kafka.sasl_password_file or credentials_dir(config.state_dir) / username
    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"Kafka password of principal {username!r} not readable at {password_file}: {exc}",
            fix="set kafka.sasl_password_file (in docker-compose: a secret), or use `cumulus up --secure`",
        ) from exc
    ca = local_ca(config.state_dir)
    cafile = kafka.ssl_cafile or (ca if ca.exists() else None)
    return KafkaSecurity(protocol, username, password, cafile)
