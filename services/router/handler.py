"""The router's batch handler over adapters, verdicts, commands and drift: decide, then publish.

Driven by the consume runtime (cumulus.kafka.runtime), which commits a batch only once Kafka has
acknowledged the route tables and rollout events it produced. Per batch: decode each record
(undecodable ones are dead-lettered and skipped), hand it to the ``Router``, run every gate once,
publish what came out. A crash before the commit redelivers the batch: a redelivered adapter
event maps onto its existing rollout, a redelivered command is a no-op or repeats an idempotent
one, and verdicts only count in memory (see services/router/state.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge

from cumulus.artifacts import ArtifactStore
from cumulus.config import RouterConfig
from cumulus.errors import ArtifactError, Conflict, EventDecodeError, InvalidArgument, NotFound
from cumulus.kafka import topics
from cumulus.kafka.codec import decode_as
from cumulus.kafka.deadletter import dead_letter
from cumulus.kafka.publisher import EventPublisher
from cumulus.kafka.runtime import Progress, Subscription, stopped_within
from cumulus.kafka.signing import CommandSigner
from cumulus.logs import get_logger
from cumulus.v1 import events_pb2
from services.router import drift, watch
from services.router.command_guard import CommandGuard
from services.router.core import PRODUCER, Output, Router

log = get_logger("router")
CONSUMER = "router"
INPUTS = (topics.ADAPTERS, topics.VERDICTS, topics.COMMANDS, topics.DRIFT)

RECORDS = Counter("cumulus_router_records", "Input records by topic and outcome.", ["topic", "outcome"])
TRANSITIONS = Counter("cumulus_router_transitions", "Rollout transitions by target state.", ["to_state"])
HELD = Gauge("cumulus_router_rollouts_held", "Rollouts holding their step for want of verdicts.")


def subscription(router: RouterConfig) -> Subscription:
    """The router's input: new adapters, the judge's verdicts, operator commands and drift signals."""
    return Subscription(
        topics=tuple(spec.name for spec in INPUTS),
        group_id=router.group_id,
        client_id=CONSUMER,
        max_records=1000,
        fetch_timeout_ms=200,
        outputs="the route tables",
    )


class RouterHandler:
    """Applies one batch to the ``Router`` (see the module docstring); a ``BatchHandler`` of the runtime."""

    def __init__(
        self,
        publisher: EventPublisher,
        router: Router,
        signer: CommandSigner,
        guard: CommandGuard,
        artifacts: ArtifactStore,
    ) -> None:
        self.artifacts = artifacts
        self.publisher = publisher
        self.router = router
        self.signer = signer
        self.guard = guard
        self.progress = Progress()

    async def handle(self, records: Sequence[Any], stopping: asyncio.Event) -> bool:
        """Decide on the batch and publish the outputs; never stops part way (decisions are in memory)."""
        self.publish(self.decide(records))
        return True

    def decide(self, records: Sequence[Any]) -> list[Output]:
        """Apply one batch to the router; the outputs to publish, gates evaluated once at the end."""
        outputs: list[Output] = []
        for record in records:
            try:
                if record.topic == topics.VERDICTS.name:
                    self.router.on_verdict(decode_as(events_pb2.Verdict, record.value, topic=record.topic))
                elif record.topic == topics.ADAPTERS.name:
                    adapter = decode_as(events_pb2.AdapterEvent, record.value)
                    refused = adapter_problem(adapter, self.artifacts)
                    if refused:
                        raise EventDecodeError(refused)
                    outputs += self.router.on_adapter(adapter)
                elif record.topic == topics.DRIFT.name:
                    outputs += drift.on_drift(self.router, decode_as(events_pb2.DriftSignal, record.value))
                else:
                    # Only a command signed with the command key is acted on (cumulus/kafka/signing.py).
                    refused = self.signer.problem(record.key, record.value or b"", record.headers)
                    if refused:
                        raise EventDecodeError(refused)
                    command = decode_as(events_pb2.RolloutCommand, record.value)
                    # Signed is not enough: fresh, not seen before, from a valid operator token.
                    refused = self.guard.refuse(command)
                    if refused:
                        raise EventDecodeError(refused)
                    outputs += self.router.on_command(command)
                RECORDS.labels(record.topic, "handled").inc()
            except (EventDecodeError, NotFound, InvalidArgument, Conflict) as exc:
                # Also a command the router cannot carry out (rollback --to an unknown version).
                RECORDS.labels(record.topic, "dead_lettered").inc()
                log.warning("record.dead_lettered", topic=record.topic, offset=record.offset, reason=str(exc))
                self.publisher.publish(
                    topics.DEADLETTER,
                    dead_letter(record, consumer=CONSUMER, producer=PRODUCER, reason=str(exc)),
                )
        return outputs + self.router.evaluate()

    async def watch(self, stopping: asyncio.Event, heartbeat_s: float, check_s: float = 1.0) -> None:
        """Until ``stopping``: every ``check_s`` hold or roll back rollouts that verdicts stopped
        reaching, and every ``heartbeat_s`` re-publish the route tables gateways must see vouched for.

        Runs beside the consume loop (an idle topic hands the handler no batch to decide on); both
        only touch the router between awaits, and nothing here needs an input committed."""
        last_beat = -heartbeat_s
        loop = asyncio.get_running_loop()
        while not await stopped_within(stopping, check_s):
            outputs = watch.silent(self.router)
            if loop.time() - last_beat >= heartbeat_s:
                outputs += watch.heartbeat(self.router)
                last_beat = loop.time()
            self.publish(outputs)
            HELD.set(sum(1 for r in self.router.rollouts.values() if r.held))

    def publish(self, outputs: list[Output]) -> None:
        for output in outputs:
            self.publisher.publish(output.topic, output.event)
            if isinstance(output.event, events_pb2.RolloutEvent):
                TRANSITIONS.labels(output.event.to_state).inc()


def adapter_problem(event: events_pb2.AdapterEvent, artifacts: ArtifactStore) -> str | None:
    """Why a ready adapter must not become a route target, or None.

    Its artifact must lie inside the configured store (an event naming ``file:///etc`` is refused
    here, before any gateway is asked to read it), and an adapter that carries weights must pin
    its manifest's sha256, which every route target then carries for the gateway to check."""
    if event.status != events_pb2.ADAPTER_STATUS_READY:
        return None
    if event.artifact_uri:
        try:
            artifacts.path_from_uri(event.artifact_uri)
        except ArtifactError as exc:
            return f"adapter {event.adapter_id}: {exc.message}"
    if event.lora_task_id and not event.manifest_sha256:
        return f"adapter {event.adapter_id} carries weights but no manifest_sha256 to pin them"
    return None
