"""``privacy.redact: capture``: the gateway publishes its tenant's events redacted (Kafka never
holds the raw text) while the models still get the raw prompt; other tenants' events are left
for the collector to redact before storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cumulus.config import PrivacyConfig
from cumulus.kafka import topics
from cumulus.trtllm import tensors
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2
from tests.unit.gateway.conftest import Harness, adapter, ask, serving

EMAIL, CARD = "ana.lima@example.org", "4111 1111 1111 1111"
PROMPT = f"I am {EMAIL}; my card {CARD} was charged twice"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Harness]:
    privacy = PrivacyConfig(tenants={"acme": {"redact": "capture"}})  # type: ignore[dict-item]
    async with serving(tmp_path, privacy) as harness:
        yield harness


async def test_a_capture_tenants_events_hold_placeholders_and_its_model_the_raw_prompt(
    gateway: Harness,
) -> None:
    gateway.route("wf", live=common_pb2.RouteTarget(model="live"), shadow=adapter(), shadow_rate=1.0)
    request = ask(PROMPT, workflow="wf", session_key="s-42")
    reply = await gateway.stub.Generate(request, metadata=gateway.auth())
    assert EMAIL in reply.text  # the fake model echoes its prompt: it got the raw one
    prompts = [tensors.input_text(r, "text_input") or "" for r in gateway.triton.requests]
    assert len(prompts) >= 2 and all(EMAIL in p for p in prompts)  # live and the shadow copy (resent)
    await gateway.core.shadows.drain(timeout_s=5)
    [event] = gateway.sink.of(topics.INFERENCE)
    assert isinstance(event, events_pb2.InferenceEvent)
    published = event.SerializeToString()
    assert EMAIL.encode() not in published and b"4111" not in published and b"s-42" not in published
    assert "<EMAIL_" in event.messages[0].content and "<EMAIL_" in event.response_text
    email = event.messages[0].content.split()[2].rstrip(";")
    assert email in event.response_text  # one placeholder for one address within the request
    # In the message, the rendered prompt and the (echoing) answer:
    assert dict(event.redacted) == {"EMAIL": 3, "CARD": 3} and event.session_key.startswith("sess-")
    [pair] = gateway.sink.of(topics.SHADOW)
    assert EMAIL.encode() not in pair.SerializeToString() and email in pair.messages[0].content


async def test_another_tenants_events_are_published_as_they_are(gateway: Harness) -> None:
    request = ask(PROMPT, workflow="wf")
    await gateway.stub.Generate(request, metadata=gateway.auth(gateway.other_key))
    [event] = gateway.sink.of(topics.INFERENCE)
    assert event.messages[0].content == PROMPT and not event.redacted  # the collector redacts it


async def test_feedback_of_a_capture_tenant_is_redacted_too(gateway: Harness) -> None:
    reply = await gateway.stub.Generate(ask("hello", workflow="wf"), metadata=gateway.auth())
    feedback = gateway_pb2.FeedbackRequest(request_id=reply.request_id, comment=f"wrong, mail {EMAIL}")
    await gateway.stub.Feedback(feedback, metadata=gateway.auth())
    [event] = gateway.sink.of(topics.FEEDBACK)
    assert EMAIL not in event.comment and dict(event.redacted) == {"EMAIL": 1}
