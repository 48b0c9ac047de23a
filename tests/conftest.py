"""Shared pytest setup: the fixtures that start real servers live in tests/integration/."""

pytest_plugins = [
    "tests.integration.kafka_fixtures",
    "tests.integration.triton_fixtures",
]
