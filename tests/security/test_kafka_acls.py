"""Kafka on the suite's stack is SASL_SSL with one principal per service and least-privilege ACLs:
no login, no way in; a service's principal sees and writes only its own topics."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from cumulus.kafka import topics
from cumulus.kafka.security import ACCESS, KafkaSecurity
from services.router.state import read_topic
from tests.security.conftest import SecureStack, as_principal


async def visible_topics(bootstrap: str, login: KafkaSecurity) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **login.client_kwargs())
    try:
        await asyncio.wait_for(consumer.start(), 20)
        return {t for t in await consumer.topics() if t.startswith("cumulus.")}
    finally:
        await consumer.stop()


async def try_write(bootstrap: str, login: KafkaSecurity, topic: str, value: bytes) -> str:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, max_batch_size=16384, **login.client_kwargs()
    )
    try:
        await asyncio.wait_for(producer.start(), 20)
        await asyncio.wait_for(producer.send_and_wait(topic, value), 15)
        return "written"
    except (KafkaError, TimeoutError) as exc:
        return type(exc).__name__
    finally:
        await producer.stop()


def test_no_login_or_a_wrong_password_gets_nothing(secure_stack: SecureStack) -> None:
    bootstrap = secure_stack.bootstrap
    with pytest.raises((KafkaError, OSError, TimeoutError)):
        asyncio.run(visible_topics(bootstrap, KafkaSecurity()))  # plaintext to a TLS listener
    gateway = as_principal("gateway")
    wrong = KafkaSecurity(gateway.protocol, gateway.username, "not-the-password", gateway.cafile)
    with pytest.raises((KafkaError, OSError, TimeoutError)):
        asyncio.run(visible_topics(bootstrap, wrong))


@pytest.mark.parametrize("principal", sorted(p for p in ACCESS if p != "cli"))
def test_each_service_sees_and_writes_only_its_own_topics(secure_stack: SecureStack, principal: str) -> None:
    bootstrap, access = secure_stack.bootstrap, ACCESS[principal]
    login = as_principal(principal)
    mine = {spec.name for spec in (*access.reads, *access.writes)}
    assert asyncio.run(visible_topics(bootstrap, login)) == mine
    # Writing where it may not: refused, and nothing lands there.
    forbidden = next(
        spec for spec in (topics.COMMANDS, topics.ROUTES, topics.INFERENCE) if spec not in access.writes
    )
    marker = f"acl-probe-{uuid.uuid4().hex}".encode()
    assert asyncio.run(try_write(bootstrap, login, forbidden.name, marker)) != "written"
    assert not [
        r for r in asyncio.run(read_topic(bootstrap, forbidden.name)) if r.value and marker in r.value
    ]
