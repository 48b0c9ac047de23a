"""Calling one route target for a request: the one path the canary, the fallback and the shadow share.

A target gets the prompt its adapter was trained on (prompt_specs.py), rendered once per model and
pruning however many times the request is sent there; the call goes to Triton with the adapter's
LoRA (the cache-miss resend in triton.py), and its responses are added up on the target's
``Outcome``, which also records what the prompt left out. Where the live model is an
OpenAI-compatible endpoint (openai_target.py), live targets go there instead, with the messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from tritonclient.grpc import service_pb2

from cumulus.config.loading import LIVE_TRITON_MODEL
from cumulus.errors import InvalidArgument
from cumulus.trtllm.tensors import Delta, make_response, output_delta
from cumulus.v1 import common_pb2
from services.gateway.adapters import AdapterSource
from services.gateway.calls import Call, Outcome
from services.gateway.openai_target import OpenAIEndpoint
from services.gateway.prompt_specs import AdapterPrompts
from services.gateway.rendering import ChatPrompt
from services.gateway.triton import TritonBackend, infer_with_lora

Answer = tuple[service_pb2.ModelInferResponse, Delta | None]
"""One Triton response as received, and its decoded text (None for an empty final response)."""


class TargetCaller:
    """Sends a call to one route target and accounts its answer on an Outcome."""

    def __init__(
        self,
        triton: TritonBackend,
        adapters: AdapterSource,
        prompts: AdapterPrompts,
        live: OpenAIEndpoint | None = None,
    ) -> None:
        self.triton = triton
        self.adapters = adapters
        self.prompts = prompts
        self.live = live
        """The live model when it is an OpenAI-compatible endpoint (``live.base_url``), else None."""

    async def stream(
        self,
        call: Call,
        target: common_pb2.RouteTarget,
        outcome: Outcome,
        *,
        candidate: bool,
        timeout_s: float,
    ) -> AsyncIterator[Answer]:
        """Yield ``target``'s responses to ``call``, adding their text and token counts to ``outcome``.

        Raises before any response when ``target`` cannot serve the call (its prompt spec, a
        candidate's unknown tools), and whatever Triton raised.
        """
        if self.live is not None and target.model == LIVE_TRITON_MODEL and not target.adapter_id:
            async for answer in self._from_endpoint(self.live, call, outcome, timeout_s):
                yield answer
            return
        text, outcome.pruned = await self.prompts.prompt_for(call, target, candidate=candidate)
        outcome.prompt_text = text
        request = call.prompt.request(target, text)
        responses = infer_with_lora(
            self.triton, request, target, self.adapters, workflow=call.workflow.name, timeout_s=timeout_s
        )
        async for response in responses:
            delta = output_delta(response)
            if delta is not None:
                if not outcome.ttft_ms:
                    outcome.ttft_ms = call.elapsed_ms()
                outcome.text += delta.text
                outcome.prompt_tokens = delta.prompt_tokens
                outcome.completion_tokens = delta.completion_tokens
            yield response, delta

    async def _from_endpoint(
        self, live: OpenAIEndpoint, call: Call, outcome: Outcome, timeout_s: float
    ) -> AsyncIterator[Answer]:
        if not isinstance(call.prompt, ChatPrompt):  # a KServe prompt is rendered for a Triton template
            raise InvalidArgument(
                "model",
                "live is an OpenAI-compatible endpoint here: it takes chat messages, not a rendered prompt",
                fix="send chat requests (Generate, or /v1/chat/completions)",
            )
        async for delta in live.stream(call.prompt, timeout_s):
            if delta.text and not outcome.ttft_ms:
                outcome.ttft_ms = call.elapsed_ms()
            outcome.text += delta.text
            outcome.prompt_tokens = delta.prompt_tokens
            outcome.completion_tokens = delta.completion_tokens
            yield make_response(LIVE_TRITON_MODEL, call.request_id, delta), delta
