"""The gateway through a Kafka outage: every request is answered, every event published exactly once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest

from cumulus.kafka import topics
from cumulus.v1 import gateway_pb2_grpc
from tests.integration.gateway_process import GatewayProcess
from tests.integration.kafka_fixtures import RestartableKafka
from tests.integration.test_gateway import ask, read_events
from tests.integration.triton_fixtures import LIVE_MODEL, SMALL_MODEL

pytestmark = pytest.mark.integration


async def test_broker_outage_every_request_answered_every_event_once(
    restartable_kafka: RestartableKafka, triton_server: str, tmp_path: Path
) -> None:
    gateway = await asyncio.to_thread(
        GatewayProcess.start,
        tmp_path / "gateway",
        kafka_bootstrap=restartable_kafka.bootstrap,
        triton_url=triton_server,
        live_model=LIVE_MODEL,
        small_model=SMALL_MODEL,
    )
    sent: list[str] = []
    failures: list[str] = []
    stop_traffic = asyncio.Event()

    async def traffic(worker: int) -> None:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            client = gateway_pb2_grpc.GatewayStub(channel)
            while not stop_traffic.is_set():
                request_id = f"outage-{worker}-{len(sent)}-{uuid.uuid4().hex[:6]}"
                try:
                    await client.Generate(
                        ask("ping", "outage", max_tokens=2, request_id=request_id), metadata=gateway.auth
                    )
                    sent.append(request_id)
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")

    try:
        workers = [asyncio.create_task(traffic(i)) for i in range(3)]
        await asyncio.sleep(2.0)
        await asyncio.to_thread(restartable_kafka.stop)
        during_outage = len(sent)
        await asyncio.sleep(4.0)
        assert len(sent) > during_outage, "requests stopped being answered while Kafka was down"
        await asyncio.to_thread(restartable_kafka.start)
        await asyncio.sleep(3.0)
        stop_traffic.set()
        await asyncio.gather(*workers)
        assert not failures, failures[:5]
        events = await read_events(
            restartable_kafka.bootstrap,
            topics.INFERENCE,
            lambda e: e.request_id.startswith("outage-"),
            len(sent),
            90,
        )
        assert sorted(e.request_id for e in events) == sorted(sent)  # every request once, no duplicates
        assert len({e.meta.event_id for e in events}) == len(events)
    finally:
        stop_traffic.set()
        code = await asyncio.to_thread(gateway.stop)
    assert code == 0, gateway.log_tail()
