"""Generate, GenerateStream and Feedback through an in-process gateway with a fake Triton."""

import grpc
import pytest

from cumulus.kafka import topics
from cumulus.v1 import common_pb2, gateway_pb2
from tests.unit.gateway.conftest import Harness, ask


async def test_generate_answers_from_live_and_publishes_one_event(gateway: Harness) -> None:
    reply = await gateway.stub.Generate(ask("hi there", request_id="req-1"), metadata=gateway.auth())
    assert reply.request_id == "req-1"
    assert reply.text == "live says: <live>|user:hi there"
    assert reply.route.target.model == "live" and reply.route.mode == common_pb2.ROUTE_MODE_LIVE
    assert reply.usage.completion_tokens == len(reply.text.split())
    assert reply.workflow.startswith("wf-") and reply.latency_ms > 0
    [event] = gateway.sink.of(topics.INFERENCE)
    assert (
        event.request_id == "req-1" and event.meta.tenant == "acme" and event.meta.workflow == reply.workflow
    )
    assert event.prompt_text == "<live>|user:hi there" and event.response_text == reply.text
    assert event.status == common_pb2.STATUS_OK and event.workflow_derived
    assert event.params.max_tokens == gateway.core.limits.default_max_tokens
    assert event.messages[0].content == "hi there" and event.meta.event_id


async def test_stream_returns_the_same_text_as_unary(gateway: Harness) -> None:
    request = ask("one two three four")
    unary = await gateway.stub.Generate(request, metadata=gateway.auth())
    chunks = [c async for c in gateway.stub.GenerateStream(request, metadata=gateway.auth())]
    assert len(chunks) > 2 and all(not c.finished for c in chunks[:-1])
    assert "".join(c.delta for c in chunks) == unary.text
    last = chunks[-1]
    assert last.finished and last.workflow == unary.workflow and last.route == unary.route
    assert last.usage == unary.usage
    stream_request = gateway.triton.requests[-1]
    assert stream_request.inputs[2].name == "stream"  # the stream flag reached Triton


async def test_params_reach_triton(gateway: Harness) -> None:
    params = common_pb2.GenerationParams(max_tokens=3, temperature=0.5, top_p=0.9, stop=["\n\n"])
    reply = await gateway.stub.Generate(ask("a b c d e", params=params), metadata=gateway.auth())
    assert len(reply.text.split(" ")) == 3
    names = [t.name for t in gateway.triton.requests[-1].inputs]
    assert names == ["text_input", "max_tokens", "stream", "temperature", "top_p", "stop_words"]


async def test_named_workflow_is_kept(gateway: Harness) -> None:
    reply = await gateway.stub.Generate(ask(workflow="tickets"), metadata=gateway.auth())
    assert reply.workflow == "tickets"
    assert not gateway.sink.of(topics.INFERENCE)[0].workflow_derived


async def test_triton_failure_is_reported_and_captured(gateway: Harness) -> None:
    from tests.unit.gateway.fakes import Behaviour

    gateway.triton.behaviours["live"] = Behaviour(fail="boom")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.Generate(ask(), metadata=gateway.auth())
    assert err.value.code() == grpc.StatusCode.INTERNAL and "boom" in (err.value.details() or "")
    [event] = gateway.sink.of(topics.INFERENCE)
    assert (
        event.status == common_pb2.STATUS_ERROR
        and event.error_code == "INTERNAL"
        and "boom" in event.error_message
    )


async def test_feedback_carries_the_workflow_of_the_request(gateway: Harness) -> None:
    reply = await gateway.stub.Generate(ask(workflow="tickets", request_id="r-9"), metadata=gateway.auth())
    answer = await gateway.stub.Feedback(
        gateway_pb2.FeedbackRequest(request_id="r-9", score=0.25, label="bad"), metadata=gateway.auth()
    )
    [event] = gateway.sink.of(topics.FEEDBACK)
    assert event.meta.event_id == answer.event_id and event.meta.workflow == reply.workflow
    assert event.score == 0.25 and event.label == "bad" and event.meta.tenant == "acme"
