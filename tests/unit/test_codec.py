import pytest

from cumulus.errors import EventDecodeError, InvalidArgument
from cumulus.kafka import codec, topics
from cumulus.v1 import common_pb2, events_pb2


def _meta() -> common_pb2.EventMeta:
    return codec.new_meta(tenant="t1", workflow="wf", producer="test")


@pytest.mark.parametrize("spec", topics.ALL_TOPICS, ids=lambda s: s.name)
def test_every_topic_round_trips_its_event(spec: topics.TopicSpec) -> None:
    event = spec.event_type(meta=_meta())
    decoded = codec.decode_event(spec.name, codec.encode_event(event))
    assert decoded == event
    assert decoded.meta.event_id and decoded.meta.occurred_at.seconds > 0


def test_event_ids_are_unique() -> None:
    assert len({codec.new_event_id() for _ in range(1000)}) == 1000


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(EventDecodeError, match="not a valid InferenceEvent"):
        codec.decode_event(topics.INFERENCE.name, b"\xff\xff\xff\xff")


def test_empty_value_and_missing_meta_are_decode_errors() -> None:
    with pytest.raises(EventDecodeError, match="empty"):
        codec.decode_event(topics.INFERENCE.name, b"")
    no_meta = events_pb2.InferenceEvent(request_id="r1").SerializeToString()
    with pytest.raises(EventDecodeError, match=r"no meta\.event_id"):
        codec.decode_event(topics.INFERENCE.name, no_meta)


def test_unknown_topic_names_the_fix() -> None:
    with pytest.raises(EventDecodeError, match=r"cumulus/kafka/topics\.py"):
        codec.decode_event("cumulus.nope.v1", b"x")


def test_routes_topic_is_compacted_and_others_delete() -> None:
    assert topics.ROUTES.configs()["cleanup.policy"] == "compact"
    assert all(s.configs()["cleanup.policy"] == "delete" for s in topics.ALL_TOPICS if s is not topics.ROUTES)
    assert len({s.name for s in topics.ALL_TOPICS}) == len(topics.ALL_TOPICS)


def test_every_event_type_carries_meta() -> None:
    for spec in topics.ALL_TOPICS:
        assert (
            spec.event_type.DESCRIPTOR.fields_by_name["meta"].message_type.full_name == "cumulus.v1.EventMeta"
        )


@pytest.mark.parametrize(
    ("tenant", "workflow"),
    [("acme", "tickets"), ("globex", "tickets"), ("", "wf-0123abcd"), ("team/eu", "a.b:c-d_1")],
)
def test_record_keys_carry_tenant_and_workflow_and_decode_back(tenant: str, workflow: str) -> None:
    key = codec.encode_key(tenant, workflow)
    assert key == f"{tenant}/{workflow}".encode()
    assert codec.decode_key(key) == (tenant, workflow)  # a tenant may hold "/", a workflow never does


def test_two_tenants_naming_a_workflow_alike_get_different_keys() -> None:
    assert codec.encode_key("acme", "tickets") != codec.encode_key("globex", "tickets")


def test_a_workflow_with_the_separator_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="workflow: 'a/b' contains '/'"):
        codec.encode_key("acme", "a/b")


@pytest.mark.parametrize(
    ("key", "expected"), [(None, ("", "")), (b"", ("", "")), (b"tickets", ("", "tickets"))]
)
def test_keys_without_tenant_decode_to_a_bare_workflow(key: bytes | None, expected: tuple[str, str]) -> None:
    assert codec.decode_key(key) == expected
