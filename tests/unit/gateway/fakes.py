"""Fakes injected into the gateway by its unit tests: a Triton, a renderer, an event sink, adapters
and their prompt specs.

``FakeTriton`` speaks the same protos as the real Triton (tritonclient's service_pb2): it reads the
TensorRT-LLM inputs of each request and answers like the CPU backend, including decoupled
streaming, the final-flag response and the LoRA cache-miss error text. Per-model behaviours make a
model fail, hang or answer slowly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2, service_pb2

from cumulus.kafka.topics import TopicSpec
from cumulus.prompts import PromptSpec, RenderedPrompt, render_prompt
from cumulus.trtllm import interface, tensors
from cumulus.trtllm.errors import TritonError, error_from_text
from cumulus.v1 import common_pb2
from services.gateway.adapters import AdapterTensors


@dataclass
class Behaviour:
    """How one fake model answers: ``fail`` with a message, ``delay_s`` before answering, or hang."""

    fail: str = ""
    delay_s: float = 0.0
    hang: bool = False


@dataclass
class FakeTriton:
    """A TritonBackend answering ``<model> says: <prompt>`` word by word (see the module docstring)."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    replies: dict[str, str] = field(default_factory=dict)
    """A fixed answer by model, instead of the echo (a JSON answer, a tool call)."""
    requests: list[service_pb2.ModelInferRequest] = field(default_factory=list, repr=False)
    lora_cache: set[int] = field(default_factory=set)

    @staticmethod
    def answer(model: str, prompt: str) -> str:
        return f"{model} says: {prompt}"

    async def stream(
        self, request: service_pb2.ModelInferRequest, timeout_s: float
    ) -> AsyncIterator[service_pb2.ModelInferResponse]:
        seen = service_pb2.ModelInferRequest()
        seen.CopyFrom(request)
        self.requests.append(seen)
        model = request.model_name
        behaviour = self.behaviours.get(model, Behaviour())
        if behaviour.hang:
            await asyncio.sleep(3600)
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.fail:
            raise TritonError(f"model {model}: {behaviour.fail}")
        task_id = tensors.input_scalar(request, "lora_task_id")
        if task_id is not None and int(task_id) not in self.lora_cache:
            if tensors.input_scalar(request, "lora_config") is None:
                text = f"LoRA task {int(task_id)} not found in cache. Please send LoRA weights with request"
                raise error_from_text(text, model)
            self.lora_cache.add(int(task_id))
        prompt = tensors.input_text(request, "text_input") or ""
        max_tokens = int(tensors.input_scalar(request, "max_tokens") or 0)
        words = self.replies.get(model, self.answer(model, prompt)).split(" ")[:max_tokens]
        prompt_tokens = len(prompt.split())
        if tensors.input_scalar(request, "stream"):
            for i, word in enumerate(words):
                delta = tensors.Delta(word if i == 0 else " " + word, prompt_tokens, i + 1)
                yield tensors.make_response(model, request.id, delta)
        else:
            yield tensors.make_response(
                model, request.id, tensors.Delta(" ".join(words), prompt_tokens, len(words))
            )
        final = service_pb2.ModelInferResponse(model_name=model, id=request.id)
        final.parameters[interface.FINAL_FLAG].bool_param = True
        yield final

    async def call(self, method: str, request: Any, timeout_s: float) -> Any:
        if method == "ServerReady":
            return service_pb2.ServerReadyResponse(ready=True)
        if method == "ServerMetadata":
            return service_pb2.ServerMetadataResponse(name="fake-triton", version="0")
        if method == "ModelReady":
            return service_pb2.ModelReadyResponse(ready=True)
        if method == "ModelMetadata":
            return service_pb2.ModelMetadataResponse(name=request.name, platform="fake")
        if method == "ModelConfig":
            config = model_config_pb2.ModelConfig(name=request.name, max_batch_size=8)
            return service_pb2.ModelConfigResponse(config=config)
        raise AssertionError(f"unexpected {method}")


@dataclass(frozen=True)
class FakeTokenizer:
    """A chat template writing ``<model>|role:content|...|tools:name,...`` (it takes ``tools=``)."""

    model: str
    chat_template: str = "{{ messages }} {{ tools }}"

    def apply_chat_template(
        self,
        chat: list[dict[str, Any]],
        *,
        tokenize: bool,
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        parts = [f"{m['role']}:{m['content']}" for m in chat]
        if tools:
            parts.append("tools:" + ",".join(t["function"]["name"] for t in tools))
        return "|".join([f"<{self.model}>", *parts])


class FakeRenderer:
    """The real ``render_prompt`` (pruning included) over a FakeTokenizer per model."""

    def render(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        prune: Collection[str] = (),
    ) -> RenderedPrompt:
        return render_prompt(FakeTokenizer(model), messages, tools or None, prune=prune)


@dataclass
class ListSink:
    """An EventSink keeping (topic name, event) pairs in order."""

    events: list[tuple[str, Message]] = field(default_factory=list, repr=False)

    def publish(self, spec: TopicSpec, event: Message) -> None:
        assert isinstance(event, spec.event_type)
        self.events.append((spec.name, event))

    def of(self, spec: TopicSpec) -> list[Any]:
        return [event for name, event in self.events if name == spec.name]


@dataclass
class FakeAdapters:
    """An AdapterSource handing out small fixed tensors and counting loads."""

    loads: list[str] = field(default_factory=list)
    refused: dict[str, Exception] = field(default_factory=dict)
    """Adapter ids whose pin check fails, with the error raised."""

    async def verify(self, target: common_pb2.RouteTarget, workflow: str) -> None:
        if target.adapter_id in self.refused:
            raise self.refused[target.adapter_id]

    async def load(self, target: common_pb2.RouteTarget, workflow: str) -> AdapterTensors:
        self.loads.append(target.adapter_id)
        return AdapterTensors(
            weights=np.ones((1, 2, 8), dtype=np.float16),
            config=np.array([[[0, 0, 2], [1, 0, 2]]], dtype=np.int32),
        )


@dataclass
class FakePromptSpecs:
    """A PromptSpecSource: ``specs`` by adapter id (a spec, or an error to raise), whole prompts otherwise."""

    specs: dict[str, PromptSpec | Exception] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    async def read(self, target: common_pb2.RouteTarget, workflow: str) -> PromptSpec:
        self.reads.append(target.adapter_id)
        spec = self.specs.get(target.adapter_id, PromptSpec())
        if isinstance(spec, Exception):
            raise spec
        return spec
