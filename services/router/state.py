"""Reading the router's state back from Kafka on start (durability without a database).

Where the state lives, and why no extra topic:
- cumulus.routes.v1 is compacted (keyed by tenant and workflow): the newest RouteTable of each
  tenant's workflow is always there. It holds what the gateway serves now (weights, candidate and
  incumbent targets, version).
- cumulus.rollouts.v1 keeps every decision forever: the newest RolloutEvent of a tenant's workflow
  gives the rollout's adapter, state and step (and, for a pause, the state to resume to).
- cumulus.adapters.v1 also keeps every event forever: each workflow's finished adapters are its
  versions (services/router/versions.py), which `rollback --to` may return to.
Together they are the whole rollout state except the verdicts counted in the current step; those
are deliberately not persisted: a restarted step tests afresh (an always-valid test may start at
any time), which costs samples, never validity. The router publishes a transition's table before
its event; if it dies in between, ``Router.restore`` sees the table ahead of the event and
republishes the table of the event's state (the conservative step).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors

from cumulus.errors import EventDecodeError
from cumulus.kafka import codec, security, topics
from cumulus.kafka.runtime import backoff_s, stopped_within
from cumulus.logs import get_logger
from cumulus.v1 import events_pb2
from services.router.rollout import WorkflowKey

log = get_logger("router")


async def read_topic(bootstrap_servers: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end offsets now, in offset order per partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        client_id="router-restore",
        **security.client_kwargs(),
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()  # a fresh client knows no topics yet
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while not await _reached(consumer, ends):
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records += [r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]]
        return records
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class SavedState:
    tables: list[events_pb2.RouteTable]
    """The newest table per (tenant, workflow)."""
    events: list[events_pb2.RolloutEvent]
    """Every rollout event, oldest first."""
    adapters: list[events_pb2.AdapterEvent]
    """Every adapter event, in offset order per partition (one workflow's stay in order)."""


async def load_state(bootstrap_servers: str, stopping: asyncio.Event) -> SavedState | None:
    """What the router restores from (see the module docstring); retries while Kafka is down."""
    attempt = 0
    while not stopping.is_set():
        try:
            route_records = await read_topic(bootstrap_servers, topics.ROUTES.name)
            rollout_records = await read_topic(bootstrap_servers, topics.ROLLOUTS.name)
            adapter_records = await read_topic(bootstrap_servers, topics.ADAPTERS.name)
        except (kafka_errors.KafkaError, OSError) as exc:
            log.warning(
                "restore.kafka_unavailable", error=f"{type(exc).__name__}: {exc}", attempt=attempt + 1
            )
            await stopped_within(stopping, backoff_s(attempt))  # the loop's test sees a stop
            attempt += 1
            continue
        tables: dict[WorkflowKey, events_pb2.RouteTable] = {}
        for table in _decoded(events_pb2.RouteTable, route_records):
            key = WorkflowKey.of(table.meta)
            held = tables.get(key)
            if held is None or table.version > held.version:
                tables[key] = table
        events = sorted(
            _decoded(events_pb2.RolloutEvent, rollout_records),
            key=lambda e: e.meta.occurred_at.ToNanoseconds(),
        )
        adapters = _decoded(events_pb2.AdapterEvent, adapter_records)
        log.info(
            "restore.read", route_tables=len(tables), rollout_events=len(events), adapter_events=len(adapters)
        )
        return SavedState(list(tables.values()), events, adapters)
    return None


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


def _decoded(event_type: Any, records: list[Any]) -> list[Any]:
    out = []
    for record in records:
        if record.value is None:
            continue
        try:
            out.append(codec.decode_as(event_type, record.value, topic=record.topic))
        except EventDecodeError as exc:  # the consumers that own these topics dead-letter them
            log.warning("restore.undecodable", topic=record.topic, offset=record.offset, error=str(exc))
    return out
