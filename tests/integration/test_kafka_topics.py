"""Topic creation against a real single-node broker (see kafka_fixtures.kafka_bootstrap)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from cumulus.config import KafkaConfig
from cumulus.errors import ConfigError, NotFound
from cumulus.kafka.admin import TopicLike, describe_topic_configs, ensure_topics
from cumulus.kafka.topics import ALL_TOPICS, ROUTES

pytestmark = pytest.mark.integration

TOPIC_NAMES = [spec.name for spec in ALL_TOPICS]


@dataclass(frozen=True)
class ScratchTopic:
    """A throwaway topic, so tests that create topics never touch the real ones."""

    name: str = field(default_factory=lambda: f"cumulus.test-{uuid.uuid4().hex[:8]}.v1")

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": "60000"}


async def test_every_topic_exists_with_the_configured_partitions(
    kafka_bootstrap: str, kafka_config: KafkaConfig
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(TOPIC_NAMES)
    finally:
        await admin.close()
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in described if topic["error_code"] == 0}
    assert partitions == dict.fromkeys(TOPIC_NAMES, kafka_config.partitions)


async def test_routes_is_compacted_and_the_others_delete(kafka_bootstrap: str) -> None:
    configs = await describe_topic_configs(kafka_bootstrap, TOPIC_NAMES)
    policies = {name: settings["cleanup.policy"] for name, settings in configs.items()}
    assert policies.pop(ROUTES.name) == "compact"
    assert set(policies.values()) == {"delete"}
    assert len(policies) == len(TOPIC_NAMES) - 1


async def test_topic_settings_from_the_spec_are_applied(kafka_bootstrap: str) -> None:
    configs = await describe_topic_configs(kafka_bootstrap, TOPIC_NAMES)
    for spec in ALL_TOPICS:
        for key, value in spec.configs().items():
            assert configs[spec.name][key] == value, (spec.name, key)


async def test_ensure_topics_twice_creates_nothing_the_second_time(
    kafka_bootstrap: str, kafka_config: KafkaConfig
) -> None:
    scratch = ScratchTopic()
    specs: list[TopicLike] = [*ALL_TOPICS, scratch]
    assert await ensure_topics(kafka_bootstrap, specs, kafka_config.partitions, 1) == [scratch.name]
    assert await ensure_topics(kafka_bootstrap, specs, kafka_config.partitions, 1) == []


async def test_too_many_replicas_is_a_config_error(kafka_bootstrap: str) -> None:
    with pytest.raises(ConfigError, match=r"kafka\.replication_factor"):
        await ensure_topics(kafka_bootstrap, [ScratchTopic()], partitions=1, replication_factor=3)


async def test_describing_a_missing_topic_is_not_found(kafka_bootstrap: str) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        await describe_topic_configs(kafka_bootstrap, [ScratchTopic().name])
