"""Shutdown drains in-flight requests; the route feed applies tables and dead-letters bad records."""

import asyncio
import time
from types import SimpleNamespace

import grpc
import pytest

from cumulus.kafka import codec, topics
from cumulus.v1 import common_pb2, events_pb2
from services.gateway.route_feed import RouteFeed
from services.gateway.routes import RouteBook
from tests.unit.gateway.conftest import Harness, ask
from tests.unit.gateway.fakes import Behaviour, ListSink


async def test_stop_lets_in_flight_requests_finish_and_refuses_new_ones(gateway: Harness) -> None:
    gateway.triton.behaviours["live"] = Behaviour(delay_s=0.5)
    in_flight = asyncio.ensure_future(gateway.stub.Generate(ask("slow"), metadata=gateway.auth()))
    await asyncio.sleep(0.1)
    stopping = asyncio.create_task(gateway.server.stop(grace_s=5.0))
    await asyncio.sleep(0.05)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.Generate(ask("late"), metadata=gateway.auth())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    reply = await in_flight
    assert reply.text.startswith("live says:")
    await stopping
    assert len(gateway.sink.of(topics.INFERENCE)) == 1  # the drained request was captured


def record(value: bytes | None, offset: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        topic=topics.ROUTES.name,
        partition=0,
        offset=offset,
        key=b"wf",
        value=value,
        timestamp=time.time_ns() // 1_000_000,
    )


def table(version: int) -> bytes:
    meta = codec.new_meta(tenant="acme", workflow="wf", producer="router")
    live = common_pb2.RouteTarget(model="live", adapter_id=f"v{version}")
    return codec.encode_event(events_pb2.RouteTable(meta=meta, version=version, live=live))


def test_feed_applies_newer_tables_ignores_older_and_dead_letters_garbage() -> None:
    book, sink = RouteBook(), ListSink()
    feed = RouteFeed("127.0.0.1:1", book, sink)
    for offset, value in enumerate([table(2), table(1), b"\xff\x00garbage", None, table(3)]):
        feed._apply(record(value, offset))  # type: ignore[arg-type]
    assert book.table("acme", "wf").version == 3  # type: ignore[union-attr]
    [dead] = sink.of(topics.DEADLETTER)
    assert dead.source_offset == 2 and dead.consumer == "gateway.routes" and dead.value == b"\xff\x00garbage"
    assert dead.meta.workflow == "wf" and dead.reason
