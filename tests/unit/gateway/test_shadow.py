"""A shadow copy never delays, changes or fails the user's response; canary failures fall back."""

import asyncio
import time

import pytest

from cumulus.kafka import topics
from cumulus.v1 import common_pb2, events_pb2
from services.gateway import metrics
from tests.unit.gateway.conftest import Harness, adapter, ask
from tests.unit.gateway.fakes import Behaviour

CANDIDATE = adapter("ad-1", task_id=7)


def shadow_everything(gateway: Harness, workflow: str = "tickets") -> None:
    gateway.route(workflow, live=common_pb2.RouteTarget(model="live"), shadow=CANDIDATE, shadow_rate=1.0)


async def wait_for_pairs(gateway: Harness, count: int, timeout_s: float = 5.0) -> list[events_pb2.ShadowPair]:
    deadline = time.monotonic() + timeout_s
    while len(gateway.sink.of(topics.SHADOW)) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return gateway.sink.of(topics.SHADOW)


def skipped() -> float:
    return metrics.SHADOW.labels("skipped")._value.get()


async def test_shadow_pair_holds_both_answers_for_the_same_prompt(gateway: Harness) -> None:
    shadow_everything(gateway)
    reply = await gateway.stub.Generate(
        ask("route me", workflow="tickets", request_id="r-1"), metadata=gateway.auth()
    )
    assert reply.text == "live says: <live>|user:route me" and reply.route.mode == common_pb2.ROUTE_MODE_LIVE
    [pair] = await wait_for_pairs(gateway, 1)
    assert pair.request_id == "r-1" and pair.adapter_id == "ad-1" and pair.meta.workflow == "tickets"
    assert pair.live.text == reply.text and pair.live.status == common_pb2.STATUS_OK
    assert pair.candidate.text == "small says: <small>|user:route me"
    assert (
        pair.candidate.route.mode == common_pb2.ROUTE_MODE_SHADOW
        and pair.candidate.status == common_pb2.STATUS_OK
    )
    assert pair.messages[0].content == "route me" and pair.pair_id
    assert gateway.adapters.loads == ["ad-1"]  # the first copy met a cache miss and resent weights


@pytest.mark.parametrize(
    "behaviour", [Behaviour(hang=True), Behaviour(delay_s=1.0), Behaviour(fail="candidate down")]
)
async def test_slow_hanging_or_failing_shadow_changes_nothing_for_the_client(
    gateway: Harness, behaviour: Behaviour
) -> None:
    plain = await gateway.stub.Generate(ask("same", workflow="tickets"), metadata=gateway.auth())
    shadow_everything(gateway)
    gateway.triton.behaviours["small"] = behaviour
    started = time.monotonic()
    shadowed = await gateway.stub.Generate(ask("same", workflow="tickets"), metadata=gateway.auth())
    assert time.monotonic() - started < 0.5
    assert shadowed.text == plain.text and shadowed.route == plain.route
    chunks = [
        c async for c in gateway.stub.GenerateStream(ask("same", workflow="tickets"), metadata=gateway.auth())
    ]
    assert "".join(c.delta for c in chunks) == plain.text
    assert [e.status for e in gateway.sink.of(topics.INFERENCE)] == [common_pb2.STATUS_OK] * 3


async def test_failed_or_timed_out_copy_is_graded_as_a_candidate_error(gateway: Harness) -> None:
    gateway.core.shadows.timeout_s = 0.2
    shadow_everything(gateway)
    gateway.triton.behaviours["small"] = Behaviour(hang=True)
    await gateway.stub.Generate(ask(workflow="tickets"), metadata=gateway.auth())
    [pair] = await wait_for_pairs(gateway, 1)
    assert pair.candidate.status == common_pb2.STATUS_ERROR and "took over" in pair.candidate.error_message
    assert pair.live.status == common_pb2.STATUS_OK


async def test_full_slots_skip_the_copy_instead_of_queueing(gateway: Harness) -> None:
    shadow_everything(gateway)
    gateway.triton.behaviours["small"] = Behaviour(hang=True)
    before = skipped()
    replies = await asyncio.gather(
        *(gateway.stub.Generate(ask(workflow="tickets"), metadata=gateway.auth()) for _ in range(5))
    )
    assert len(replies) == 5
    assert gateway.core.shadows.in_flight == gateway.core.config.gateway.shadow_concurrency == 2
    assert skipped() - before == 3


async def test_failing_canary_falls_back_to_live_and_records_the_candidate_error(gateway: Harness) -> None:
    gateway.route("tickets", canary=[events_pb2.WeightedTarget(target=CANDIDATE, weight=1.0)])
    gateway.triton.behaviours["small"] = Behaviour(fail="adapter exploded")
    reply = await gateway.stub.Generate(ask("x", workflow="tickets"), metadata=gateway.auth())
    assert reply.text == "live says: <live>|user:x"
    assert reply.route.mode == common_pb2.ROUTE_MODE_FALLBACK and reply.route.target.model == "live"
    [event] = gateway.sink.of(topics.INFERENCE)
    assert event.status == common_pb2.STATUS_OK and "adapter exploded" in event.candidate_error
    assert event.prompt_text == "<live>|user:x"


async def test_canary_answers_with_its_own_prompt_and_adapter(gateway: Harness) -> None:
    gateway.route("tickets", canary=[events_pb2.WeightedTarget(target=CANDIDATE, weight=0.999999)])
    reply = await gateway.stub.Generate(ask("x", workflow="tickets"), metadata=gateway.auth())
    assert reply.route.mode == common_pb2.ROUTE_MODE_CANARY and reply.route.target.adapter_id == "ad-1"
    assert reply.text == "small says: <small>|user:x"
    sent = [r for r in gateway.triton.requests if r.model_name == "small"]
    assert [[t.name for t in r.inputs][-1] for r in sent] == ["lora_task_id", "lora_config"]
    again = await gateway.stub.Generate(ask("y", workflow="tickets"), metadata=gateway.auth())
    assert again.route.mode == common_pb2.ROUTE_MODE_CANARY and gateway.adapters.loads == ["ad-1"]


async def test_shutdown_drains_running_copies(gateway: Harness) -> None:
    shadow_everything(gateway)
    gateway.triton.behaviours["small"] = Behaviour(delay_s=0.3)
    await gateway.stub.Generate(ask(workflow="tickets"), metadata=gateway.auth())
    await gateway.core.shadows.drain(5.0)
    assert len(gateway.sink.of(topics.SHADOW)) == 1 and gateway.core.shadows.in_flight == 0
