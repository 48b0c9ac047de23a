"""Feedback is taken only for a remembered request of its tenant, with a correction of its answer's shape."""

import grpc
import pytest

from cumulus.errors import InvalidArgument, NotFound
from cumulus.kafka import topics
from cumulus.v1 import common_pb2, gateway_pb2
from services.gateway.calls import Call, Outcome
from services.gateway.feedback import Answered, RecentRequests, check_correction
from services.gateway.routes import RoutePlan
from services.gateway.workflows import Workflow
from tests.unit.gateway.conftest import Harness, ask
from tests.unit.gateway.fakes import Behaviour

WEATHER = common_pb2.Tool(name="get_weather", parameters_json='{"type": "object"}')
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'


def call(request_id: str, tenant: str = "acme", tools: tuple[str, ...] = ()) -> Call:
    """A finished call as the dispatcher remembers it (its prompt is never read)."""
    live = common_pb2.RouteTarget(model="live")
    result = Call(
        api="generate",
        tenant=tenant,
        workflow=Workflow("wf", fingerprint="fp", derived=False),
        request_id=request_id,
        session_key="",
        plan=RoutePlan(primary=common_pb2.Route(target=live), live=live, shadow=None, table_version=0),
        prompt=None,  # type: ignore[arg-type]
        timeout_s=1.0,
    )
    result.capture.tools.extend(common_pb2.Tool(name=name) for name in tools)
    return result


def answered(text: str, tools: tuple[str, ...] = ()) -> Answered:
    recent = RecentRequests(1)
    recent.remember(call("r", tools=tools), Outcome(route=common_pb2.Route(), text=text))
    return recent.lookup("r", "acme")


async def feedback(
    gateway: Harness, key: str | None = None, **fields: object
) -> gateway_pb2.FeedbackResponse:
    request = gateway_pb2.FeedbackRequest(**fields)  # type: ignore[arg-type]
    response: gateway_pb2.FeedbackResponse = await gateway.stub.Feedback(request, metadata=gateway.auth(key))
    return response


async def refused(gateway: Harness, key: str | None = None, **fields: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await feedback(gateway, key, **fields)
    assert not gateway.sink.of(topics.FEEDBACK)
    return err.value


def test_memory_forgets_the_oldest_request_first() -> None:
    recent = RecentRequests(2)
    for request_id in ("a", "b", "a", "c"):  # "a" answered again: newer than "b"
        recent.remember(call(request_id), Outcome(route=common_pb2.Route(), text="ok"))
    assert recent.lookup("a", "acme").workflow == "wf" and recent.lookup("c", "acme").shape == "label"
    with pytest.raises(NotFound, match=r"gateway\.feedback_memory"):
        recent.lookup("b", "acme")


def test_memory_of_zero_remembers_nothing() -> None:
    recent = RecentRequests(0)
    recent.remember(call("a"), Outcome(route=common_pb2.Route(), text="ok"))
    with pytest.raises(NotFound, match="the last 0 requests"):
        recent.lookup("a", "acme")


def test_memory_keeps_tenants_apart() -> None:
    recent = RecentRequests(10)
    recent.remember(call("same-id", tenant="acme"), Outcome(route=common_pb2.Route(), text="{}"))
    recent.remember(call("same-id", tenant="globex"), Outcome(route=common_pb2.Route(), text="ok"))
    assert recent.lookup("same-id", "acme").shape == "json"
    assert recent.lookup("same-id", "globex").shape == "label"


@pytest.mark.parametrize(
    ("text", "tools", "shape", "kept"),
    [
        (CALL, ("get_weather", "search"), "tool_call", ("get_weather", "search")),
        ('{"priority": "high"}', ("get_weather",), "json", ()),  # names kept only for tool calls
        ("positive", (), "label", ()),
        ("A long answer.\nIn prose.", (), "semantic", ()),
        ("[" * 100_000, (), "semantic", ()),  # too deep for the JSON parser: nothing enforced
    ],
)
def test_the_answer_shape_is_detected_as_the_judge_does(
    text: str, tools: tuple[str, ...], shape: str, kept: tuple[str, ...]
) -> None:
    assert answered(text, tools) == Answered("wf", shape, kept)


def test_a_failed_request_takes_any_correction() -> None:
    recent = RecentRequests(1)
    recent.remember(call("r"), Outcome(route=common_pb2.Route(), text="{", error=RuntimeError("boom")))
    assert recent.lookup("r", "acme").shape == "semantic"


@pytest.mark.parametrize(
    ("answer", "tools", "correction", "problem"),
    [
        ('{"priority": "high"}', (), "high priority", "not a JSON object or array"),
        ('{"priority": "high"}', (), '"high"', "not a JSON object or array"),
        ('{"priority": "high"}', (), "[" * 100_000, "nested too deeply"),
        (CALL, ("get_weather",), "call get_weather for Paris", "not a tool call"),
        (CALL, ("get_weather",), '[send_email(to="x")]', "unknown tool 'send_email'"),
        (CALL, ("get_weather",), '{"name": "send_email", "arguments": {}}', "unknown tool 'send_email'"),
    ],
)
def test_a_correction_of_the_wrong_shape_is_refused(
    answer: str, tools: tuple[str, ...], correction: str, problem: str
) -> None:
    with pytest.raises(InvalidArgument, match=problem) as err:
        check_correction(correction, answered(answer, tools))
    assert err.value.field == "correction"


@pytest.mark.parametrize(
    ("answer", "tools", "correction"),
    [
        ('{"priority": "high"}', (), '```json\n{"priority": "low"}\n```'),
        (CALL, ("get_weather",), 'get_weather(city="Rome")'),
        ('{"name": "lookup", "arguments": {}}', (), '{"name": "other", "arguments": {}}'),  # none declared
        ("positive", (), "negative, and here is why: ..."),
        ("A long answer.\nIn prose.", (), "{not json"),
    ],
)
def test_a_correction_of_the_answers_shape_is_taken(
    answer: str, tools: tuple[str, ...], correction: str
) -> None:
    check_correction(correction, answered(answer, tools))


async def test_feedback_for_an_unknown_request_is_not_found(gateway: Harness) -> None:
    error = await refused(gateway, request_id="gone", label="ok")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "gone" in (error.details() or "") and "gateway.feedback_memory" in (error.details() or "")


async def test_another_tenants_request_is_as_unknown_as_a_made_up_one(gateway: Harness) -> None:
    await gateway.stub.Generate(ask(request_id="r-1"), metadata=gateway.auth())
    theirs = await refused(gateway, gateway.other_key, request_id="r-1", label="x")
    made_up = await refused(gateway, gateway.other_key, request_id="r-2", label="x")
    assert theirs.code() == made_up.code() == grpc.StatusCode.NOT_FOUND
    assert theirs.details() == (made_up.details() or "").replace("r-2", "r-1")


async def test_a_json_workflow_refuses_a_prose_correction(gateway: Harness) -> None:
    gateway.triton.replies["live"] = '{"priority": "high", "team": "billing"}'
    await gateway.stub.Generate(ask(workflow="tickets", request_id="t-1"), metadata=gateway.auth())
    error = await refused(gateway, request_id="t-1", correction="priority low")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("correction: ") and "'tickets'" in (error.details() or "")
    await feedback(gateway, request_id="t-1", correction='{"priority": "low", "team": "billing"}')
    [event] = gateway.sink.of(topics.FEEDBACK)
    assert event.meta.workflow == "tickets" and event.correction.startswith('{"priority": "low"')


async def test_a_tool_workflow_refuses_a_call_of_an_undeclared_tool(gateway: Harness) -> None:
    gateway.triton.replies["live"] = CALL
    request = ask("weather in Paris?", request_id="w-1", tools=[WEATHER])
    await gateway.stub.Generate(request, metadata=gateway.auth())
    error = await refused(gateway, request_id="w-1", correction='send_email(to="boss")')
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("correction: calls unknown tool 'send_email'")
    assert "get_weather" in (error.details() or "")
    await feedback(gateway, request_id="w-1", correction='get_weather(city="Paris, TX")')
    assert len(gateway.sink.of(topics.FEEDBACK)) == 1


async def test_a_label_is_taken_whatever_the_answer_shape(gateway: Harness) -> None:
    gateway.triton.replies["live"] = '{"priority": "high"}'
    await gateway.stub.Generate(ask(request_id="j-1"), metadata=gateway.auth())
    gateway.triton.replies["live"] = CALL
    await gateway.stub.Generate(ask(request_id="c-1", tools=[WEATHER]), metadata=gateway.auth())
    del gateway.triton.replies["live"]
    await gateway.stub.Generate(ask(request_id="p-1"), metadata=gateway.auth())
    for request_id in ("j-1", "c-1", "p-1"):
        await feedback(gateway, request_id=request_id, label="bad", score=0.0, comment="wrong team")
    assert [e.request_id for e in gateway.sink.of(topics.FEEDBACK)] == ["j-1", "c-1", "p-1"]


async def test_a_failed_request_takes_feedback(gateway: Harness) -> None:
    gateway.triton.behaviours["live"] = Behaviour(fail="boom")
    with pytest.raises(grpc.aio.AioRpcError):
        await gateway.stub.Generate(ask(request_id="f-1"), metadata=gateway.auth())
    await feedback(gateway, request_id="f-1", correction="what it should have said")
    assert gateway.sink.of(topics.FEEDBACK)[0].correction == "what it should have said"


async def test_feedback_sent_twice_is_published_twice_for_the_latest_to_win(gateway: Harness) -> None:
    """Consumers keep the latest per request (collector export, judge gold join): each event stays unique."""
    await gateway.stub.Generate(ask(workflow="tickets", request_id="d-1"), metadata=gateway.auth())
    first = await feedback(gateway, request_id="d-1", label="bad")
    second = await feedback(gateway, request_id="d-1", label="good")
    events = gateway.sink.of(topics.FEEDBACK)
    assert [e.meta.event_id for e in events] == [first.event_id, second.event_id]
    assert first.event_id != second.event_id and events[0].meta.workflow == events[1].meta.workflow
    assert events[0].meta.occurred_at.ToNanoseconds() <= events[1].meta.occurred_at.ToNanoseconds()
