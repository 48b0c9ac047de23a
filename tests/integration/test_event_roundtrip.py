"""Every event type survives a produce/consume round trip through the real broker."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cumulus.kafka import codec, topics
from tests.integration.records import decode_or_none


async def test_every_event_type_round_trips_through_kafka(kafka_bootstrap: str) -> None:
    sent = {}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for spec in topics.ALL_TOPICS:
            workflow = f"wf-{uuid.uuid4().hex[:8]}"
            event = spec.event_type(meta=codec.new_meta(tenant="t", workflow=workflow, producer="test"))
            await producer.send_and_wait(
                spec.name, codec.encode_event(event), key=codec.encode_key("t", workflow)
            )
            sent[spec.name] = event
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        *sent,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"roundtrip-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received = {}
    try:

        async def drain() -> None:
            while len(received) < len(sent):
                async for record in consumer:
                    event = decode_or_none(record.topic, record.value)
                    if event is not None and event.meta.event_id == sent[record.topic].meta.event_id:
                        assert record.key == codec.encode_key(event.meta.tenant, event.meta.workflow)
                        received[record.topic] = event
                    if len(received) == len(sent):
                        return

        await asyncio.wait_for(drain(), timeout=60)
    finally:
        await consumer.stop()
    assert received == sent
