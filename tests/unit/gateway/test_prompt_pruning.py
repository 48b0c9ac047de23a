"""Adapters trained on pruned prompts are served pruned prompts; everything else stays whole."""

from pathlib import Path

import pytest
import tritonclient.grpc.aio as aioclient

from cumulus.artifacts import ArtifactStore
from cumulus.errors import ArtifactError, NotFound
from cumulus.kafka import topics
from cumulus.prompts import RENDERER, PromptSpec
from cumulus.trtllm import tensors
from cumulus.v1 import common_pb2, events_pb2, gateway_pb2
from services.gateway.capture import PRUNED_METADATA
from services.gateway.prompt_specs import (
    WHOLE,
    AdapterPrompts,
    ArtifactPromptSpecs,
    read_prompt_spec,
)
from tests.unit.gateway.conftest import Harness, adapter
from tests.unit.gateway.fakes import FakePromptSpecs
from tests.unit.gateway.test_kserve import headers, inputs
from tests.unit.gateway.test_shadow import wait_for_pairs

PRUNED = adapter("ad-pruned", task_id=11)
LIVE = common_pb2.RouteTarget(model="live")
WHOLE_TEXT = "system:You triage tickets.|user:printer on fire|tools:open_ticket"
PRUNED_TEXT = "user:printer on fire"


def ticket() -> gateway_pb2.GenerateRequest:
    """A request with a system prompt and a tool schema: the parts an adapter may have learned."""
    return gateway_pb2.GenerateRequest(
        workflow="tickets",
        messages=[
            common_pb2.ChatMessage(role="system", content="You triage tickets."),
            common_pb2.ChatMessage(role="user", content="printer on fire"),
        ],
        tools=[common_pb2.Tool(name="open_ticket", description="Open a ticket", parameters_json="{}")],
    )


def sent_text(gateway: Harness, model: str) -> list[str]:
    return [
        tensors.input_text(r, "text_input") or "" for r in gateway.triton.requests if r.model_name == model
    ]


def canary(gateway: Harness, target: common_pb2.RouteTarget) -> None:
    gateway.route("tickets", live=LIVE, canary=[events_pb2.WeightedTarget(target=target, weight=1.0)])


async def test_a_pruned_adapter_gets_the_prompt_it_was_trained_on_and_the_event_keeps_everything(
    gateway: Harness,
) -> None:
    gateway.prompt_specs.specs["ad-pruned"] = PromptSpec(prune=("system", "tools"))
    canary(gateway, PRUNED)
    reply = await gateway.stub.Generate(ticket(), metadata=gateway.auth())
    assert reply.route.target.adapter_id == "ad-pruned" and reply.text == f"small says: <small>|{PRUNED_TEXT}"
    assert set(sent_text(gateway, "small")) == {f"<small>|{PRUNED_TEXT}"}  # first try and LoRA resend
    [event] = gateway.sink.of(topics.INFERENCE)
    assert event.prompt_text == f"<small>|{PRUNED_TEXT}"
    assert [m.role for m in event.messages] == ["system", "user"] and event.tools[0].name == "open_ticket"
    assert event.metadata[PRUNED_METADATA] == "system,tools"
    await gateway.stub.Generate(ticket(), metadata=gateway.auth())
    assert gateway.prompt_specs.reads == ["ad-pruned"]  # read once, then kept


async def test_the_live_model_and_unpruned_adapters_get_the_whole_prompt(gateway: Harness) -> None:
    live = await gateway.stub.Generate(ticket(), metadata=gateway.auth())
    assert (
        sent_text(gateway, "live") == [f"<live>|{WHOLE_TEXT}"]
        and live.route.mode == common_pb2.ROUTE_MODE_LIVE
    )
    canary(gateway, adapter("ad-plain", task_id=12))  # its manifest has no prompt spec
    await gateway.stub.Generate(ticket(), metadata=gateway.auth())
    assert set(sent_text(gateway, "small")) == {f"<small>|{WHOLE_TEXT}"}
    assert not any(PRUNED_METADATA in e.metadata for e in gateway.sink.of(topics.INFERENCE))


async def test_a_shadow_copy_to_a_pruned_adapter_gets_the_pruned_prompt(gateway: Harness) -> None:
    gateway.prompt_specs.specs["ad-pruned"] = PromptSpec(prune=("system", "tools"))
    gateway.route("tickets", live=LIVE, shadow=PRUNED, shadow_rate=1.0)
    reply = await gateway.stub.Generate(ticket(), metadata=gateway.auth())
    assert reply.text == f"live says: <live>|{WHOLE_TEXT}"
    [pair] = await wait_for_pairs(gateway, 1)
    assert pair.candidate.status == common_pb2.STATUS_OK
    assert pair.candidate.text == f"small says: <small>|{PRUNED_TEXT}"
    assert [m.role for m in pair.messages] == ["system", "user"] and len(
        pair.tools
    ) == 1  # the judge sees all
    [event] = gateway.sink.of(topics.INFERENCE)
    assert event.prompt_text == f"<live>|{WHOLE_TEXT}" and PRUNED_METADATA not in event.metadata


@pytest.mark.parametrize(
    ("problem", "reads"),
    [
        (ArtifactError("manifest field prompt.prune names unknown parts ['examples']"), 1),
        (NotFound("adapter not found at /nowhere/ad-pruned"), 2),  # may still arrive: read again
    ],
)
async def test_a_canary_whose_spec_is_unusable_falls_back_to_live(
    gateway: Harness, problem: Exception, reads: int
) -> None:
    gateway.prompt_specs.specs["ad-pruned"] = problem
    canary(gateway, PRUNED)
    for _ in range(2):
        reply = await gateway.stub.Generate(ticket(), metadata=gateway.auth())
        assert (
            reply.route.mode == common_pb2.ROUTE_MODE_FALLBACK
            and reply.text == f"live says: <live>|{WHOLE_TEXT}"
        )
    assert sent_text(gateway, "small") == []
    events = gateway.sink.of(topics.INFERENCE)
    assert all(e.status == common_pb2.STATUS_OK and problem.args[0] in e.candidate_error for e in events)
    assert len(gateway.prompt_specs.reads) == reads


async def test_a_shadow_copy_whose_spec_is_unusable_is_a_candidate_error(gateway: Harness) -> None:
    gateway.prompt_specs.specs["ad-pruned"] = ArtifactError("manifest names prompt renderer 'other'")
    gateway.route("tickets", live=LIVE, shadow=PRUNED, shadow_rate=1.0)
    reply = await gateway.stub.Generate(ticket(), metadata=gateway.auth())
    assert reply.text == f"live says: <live>|{WHOLE_TEXT}"
    [pair] = await wait_for_pairs(gateway, 1)
    assert pair.candidate.status == common_pb2.STATUS_ERROR and "'other'" in pair.candidate.error_message
    assert sent_text(gateway, "small") == []


async def test_a_prompt_rendered_by_the_client_is_not_sent_to_a_pruned_candidate(gateway: Harness) -> None:
    gateway.prompt_specs.specs["ad-pruned"] = PromptSpec(prune=("system",))
    canary(gateway, PRUNED)
    async with aioclient.InferenceServerClient(gateway.address) as client:
        result = await client.infer(
            "small",
            inputs("system: x user: y"),
            request_id="k1",
            headers=headers(gateway, **{"x-cumulus-workflow": "tickets"}),
        )
    assert result.as_numpy("text_output").reshape(-1)[0] == b"small says: system: x user: y"
    [event] = gateway.sink.of(topics.INFERENCE)
    assert event.route.mode == common_pb2.ROUTE_MODE_FALLBACK and not event.route.target.adapter_id
    assert "cannot be pruned" in event.candidate_error


async def test_bare_targets_need_no_spec() -> None:
    source = FakePromptSpecs()
    prompts = AdapterPrompts(source)
    bare = common_pb2.RouteTarget(model="small", adapter_id="bare-small")  # lora_task_id 0: no adapter
    assert await prompts.load(bare, "wf") == WHOLE and prompts.prune_for(bare, "wf") == ()
    assert source.reads == []


def register(store: ArtifactStore, workflow: str, adapter_id: str, **fields: object) -> Path:
    with store.create("adapters", workflow, adapter_id) as writer:
        writer.write_bytes("adapter_model.safetensors", b"weights")
        writer.commit(fields)
    return store.path("adapters", workflow, adapter_id)


def test_specs_are_read_from_the_manifest_the_trainer_writes(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    pruned = register(store, "wf", "a", prompt={"renderer": RENDERER, "prune": ["system", "tools"]})
    assert read_prompt_spec(pruned) == PromptSpec(prune=("system", "tools"))
    assert read_prompt_spec(register(store, "wf", "b", prompt={"renderer": RENDERER, "prune": []})) == WHOLE
    assert read_prompt_spec(register(store, "wf", "c")) == WHOLE  # trained before the field existed
    with pytest.raises(ArtifactError, match=r"unknown parts \['examples'\]"):
        read_prompt_spec(register(store, "wf", "d", prompt={"prune": ["examples"]}))
    with pytest.raises(NotFound):
        read_prompt_spec(store.path("adapters", "wf", "missing"))
    (pruned / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_prompt_spec(pruned)


async def test_the_artifact_source_resolves_the_adapter_like_the_lora_resend(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    register(store, "other-wf", "x", prompt={"renderer": RENDERER, "prune": ["tools"]})
    target = common_pb2.RouteTarget(
        model="small", adapter_id="x", lora_task_id=3, adapter_uri=store.uri("adapters", "other-wf", "x")
    )
    prompts = AdapterPrompts(ArtifactPromptSpecs(tmp_path / "store"))
    assert await prompts.load(target, "wf") == PromptSpec(prune=("tools",))
    assert prompts.prune_for(target, "wf") == ("tools",)


async def test_a_candidate_never_answers_for_a_tool_it_was_not_trained_on(gateway: Harness) -> None:
    gateway.prompt_specs.specs["ad-pruned"] = PromptSpec(
        prune=("system", "tools"), tool_names=frozenset({"x"})
    )
    canary(gateway, PRUNED)
    reply = await gateway.stub.Generate(ticket(), metadata=gateway.auth())  # offers open_ticket
    assert (
        reply.route.mode == common_pb2.ROUTE_MODE_FALLBACK and reply.text == f"live says: <live>|{WHOLE_TEXT}"
    )
    [event] = gateway.sink.of(topics.INFERENCE)
    assert "never saw ['open_ticket']" in event.candidate_error

    gateway.prompt_specs.specs["ad-known"] = PromptSpec(
        prune=("tools",), tool_names=frozenset({"open_ticket"})
    )
    known = events_pb2.WeightedTarget(target=adapter("ad-known", task_id=13), weight=1.0)
    gateway.route("tickets", version=2, live=LIVE, canary=[known])
    reply = await gateway.stub.Generate(ticket(), metadata=gateway.auth())
    assert reply.route.target.adapter_id == "ad-known" and "tools:" not in reply.text


async def test_a_promoted_adapter_gets_the_schemas_of_tools_it_never_saw(gateway: Harness) -> None:
    gateway.prompt_specs.specs["ad-pruned"] = PromptSpec(
        prune=("system", "tools"), tool_names=frozenset({"x"})
    )
    gateway.route("tickets", live=PRUNED)  # promoted: there is nobody to fall back to
    reply = await gateway.stub.Generate(ticket(), metadata=gateway.auth())
    assert reply.route.target.adapter_id == "ad-pruned"
    assert sent_text(gateway, "small")[0] == "<small>|user:printer on fire|tools:open_ticket"
    [event] = gateway.sink.of(topics.INFERENCE)
    assert event.metadata[PRUNED_METADATA] == "system"  # what was left out of this prompt


def test_the_manifest_records_the_tools_an_adapter_learned(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    folder = register(
        store, "wf", "a", prompt={"renderer": RENDERER, "prune": ["tools"], "tool_names": ["f"]}
    )
    spec = read_prompt_spec(folder)
    assert (
        spec.tool_names == frozenset({"f"}) and spec.knows_tools(["f"]) and not spec.knows_tools(["f", "g"])
    )
    assert PromptSpec(prune=("system",), tool_names=frozenset()).knows_tools(["g"])  # tools not pruned
    with pytest.raises(ArtifactError, match="tool_names"):
        read_prompt_spec(register(store, "wf", "b", prompt={"prune": ["tools"], "tool_names": "f"}))
