"""Topic administration: create the cumulus topics idempotently and read their settings back.

Used by ``cumulus up`` after the local broker is ready, by the integration tests, and against
a production cluster (where ``replication_factor`` is 3). aiokafka's errors are translated here,
at one boundary, into cumulus errors (``raise ... from exc``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    BrokerResponseError,
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from cumulus.errors import ConfigError, CumulusError, NotFound, NotReady
from cumulus.kafka import security
from cumulus.logs import get_logger

_REQUEST_TIMEOUT_MS = 15_000

log = get_logger("kafka_admin")


class TopicLike(Protocol):
    """What topic creation needs from a cumulus.kafka.topics.TopicSpec."""

    @property
    def name(self) -> str: ...

    def configs(self) -> dict[str, str]: ...


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit; connection failures become NotReady."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=_REQUEST_TIMEOUT_MS, **security.client_kwargs()
    )
    try:
        await admin.start()
        yield admin
    except (KafkaError, OSError) as exc:  # OSError covers TimeoutError
        if isinstance(exc, BrokerResponseError) and not exc.retriable:
            raise CumulusError(f"Kafka at {bootstrap} refused an admin request: {exc}") from exc
        raise NotReady(
            f"Kafka at {bootstrap} is unreachable or not ready: {type(exc).__name__}: {exc}",
            fix="start it (`cumulus up`) or correct kafka.bootstrap_servers",
        ) from exc
    finally:
        await admin.close()


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicLike], partitions: int, replication_factor: int
) -> list[str]:
    """Create every topic of ``specs`` that does not exist yet, with its ``configs()``.

    Existing topics are left as they are (their settings are not altered), so calling this on
    every start is safe. Returns the names of the topics this call created.
    """
    specs = list(specs)
    async with _admin(bootstrap) as admin:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(spec.name, partitions, replication_factor, topic_configs=spec.configs())
                for spec in missing
            ]
        )
    created = []
    for name, code, message in _topic_results(response.topic_errors):
        if code == 0:
            created.append(name)
        # Another process (a second `cumulus up`, a test) created it between our list and create.
        elif code != TopicAlreadyExistsError.errno:
            cause = for_code(code)(message)
            raise _creation_error(name, cause, partitions, replication_factor) from cause
    log.info("kafka.topics_created", bootstrap=bootstrap, topics=",".join(created) or "-")
    return created


async def describe_topic_configs(bootstrap: str, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """Every setting of each named topic as the broker reports it (defaults included).

    Raises NotFound when a topic does not exist.
    """
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    if not resources:
        return {}
    async with _admin(bootstrap) as admin:
        responses = await admin.describe_configs(resources)
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for code, message, _type, name, entries in (res[:5] for res in response.resources):
            if code == UnknownTopicOrPartitionError.errno:
                raise NotFound(f"Kafka topic {name} does not exist") from for_code(code)(message)
            if code != 0:
                raise CumulusError(f"describing Kafka topic {name} failed: {message}") from for_code(code)(
                    message
                )
            # Sensitive values come back as None; an empty string keeps the mapping str -> str.
            configs[name] = {entry[0]: entry[1] or "" for entry in entries}
    return configs


def _topic_results(topic_errors: list[tuple[Any, ...]]) -> Iterable[tuple[str, int, str]]:
    # CreateTopicsResponse v0 has no message field; v1+ add it. Normalise to three fields.
    for item in topic_errors:
        name, code, message = (*item, "")[:3]
        yield name, code, message or ""


def _creation_error(
    name: str, cause: BrokerResponseError, partitions: int, replication_factor: int
) -> CumulusError:
    """The cumulus error for a topic the broker refused, naming the setting to change."""
    detail = f"{cause.message}: {cause}"
    if isinstance(cause, InvalidReplicationFactorError):
        return ConfigError(
            f"cannot create {name} with replication factor {replication_factor} ({detail})",
            fix="set kafka.replication_factor to at most the number of brokers (1 for the local stack)",
        )
    if isinstance(cause, InvalidPartitionsError):
        return ConfigError(
            f"cannot create {name} with {partitions} partitions ({detail})",
            fix="set kafka.partitions to a positive number",
        )
    if isinstance(cause, InvalidConfigurationError):
        return ConfigError(
            f"Kafka refused the settings of {name} ({detail})",
            fix="correct the topic's settings in cumulus/kafka/topics.py",
        )
    return CumulusError(f"creating Kafka topic {name} failed ({detail})")
