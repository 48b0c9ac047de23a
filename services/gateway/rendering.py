"""Chat messages and tools -> the prompt text of the model a request is routed to.

Each Triton model (``live``, ``small``) is one offline base model (``triton.live_model``,
``triton.small_model``); its chat template renders the prompt, through the shared
``cumulus.prompts.render_prompt`` the trainer uses too, with the same ``prune`` (prompt_specs.py), so
an adapter is served the prompt shape it was trained on. The templates are rendered with jinja2 the
way transformers renders them (cumulus.chat_templates), so the gateway imports neither transformers
nor torch. They are loaded once at start, in a thread, before the gateway reports ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from jinja2 import TemplateError
from tritonclient.grpc import service_pb2

from cumulus.chat_templates import ChatTemplate
from cumulus.errors import InvalidArgument, NotFound, NotReady
from cumulus.models import ensure_model
from cumulus.prompts import RenderedPrompt, render_prompt
from cumulus.v1 import common_pb2
from services.gateway.triton import build_request
from services.gateway.validation import Sampling


class PromptRenderer(Protocol):
    """Renders a chat request for one Triton model, leaving out the ``prune`` parts (cumulus.prompts)."""

    def render(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        prune: Collection[str] = (),
    ) -> RenderedPrompt: ...


def chat_messages(messages: Sequence[common_pb2.ChatMessage]) -> list[dict[str, Any]]:
    """Proto chat messages as the OpenAI-style dicts the renderer takes."""
    out: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.name:
            item["name"] = message.name
        if message.tool_call_id:
            item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out


def chat_tools(tools: Sequence[common_pb2.Tool], schemas: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Proto tools (with their parsed parameter schemas) as OpenAI-style function tools."""
    return [
        {
            "type": "function",
            "function": {"name": tool.name, "description": tool.description, "parameters": schema},
        }
        for tool, schema in zip(tools, schemas, strict=True)
    ]


class ChatPrompt:
    """A chat request's prompt (``CallPrompt``): rendered for each target's model and pruning, once."""

    prunable = True

    def __init__(
        self,
        renderer: PromptRenderer,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        sampling: Sampling,
        *,
        stream: bool,
        request_id: str,
    ) -> None:
        self.renderer = renderer
        self.messages = messages
        self.tools = tools
        self.sampling = sampling
        self.stream = stream
        self.request_id = request_id
        self._rendered: dict[tuple[str, tuple[str, ...]], str] = {}

    def text(self, model: str, prune: tuple[str, ...]) -> str:
        text = self._rendered.get((model, prune))
        if text is None:
            text = self.renderer.render(model, self.messages, self.tools, prune=prune).text
            self._rendered[model, prune] = text
        return text

    def request(self, target: common_pb2.RouteTarget, text: str) -> service_pb2.ModelInferRequest:
        return build_request(
            target.model, text, self.sampling, stream=self.stream, request_id=self.request_id
        )


class TokenizerRenderer:
    """PromptRenderer using each model's own tokenizer (see the module docstring)."""

    def __init__(self, model_ids: Mapping[str, str], models_dir: Path) -> None:
        self.model_ids = dict(model_ids)
        """Triton model name -> offline model id."""
        self.models_dir = models_dir
        self._tokenizers: dict[str, ChatTemplate] = {}

    async def load(self) -> None:
        """Load every model's tokenizer (converting the model into the cache once if needed)."""
        for name, model_id in self.model_ids.items():
            self._tokenizers[name] = await asyncio.to_thread(self._load_one, model_id)

    def _load_one(self, model_id: str) -> ChatTemplate:
        # The folder exists once Triton (or `cumulus prepare --models`) converted the model; only a
        # gateway started before that converts it itself, loading torch that once.
        return ChatTemplate.from_folder(ensure_model(model_id, self.models_dir))

    async def readiness(self) -> str | None:
        """Readiness check: None once every tokenizer is loaded."""
        missing = sorted(set(self.model_ids) - set(self._tokenizers))
        return f"tokenizers not loaded yet for {missing}" if missing else None

    def render(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        prune: Collection[str] = (),
    ) -> RenderedPrompt:
        tokenizer = self._tokenizers.get(model)
        if tokenizer is None:
            if model not in self.model_ids:
                raise NotFound(
                    f"no tokenizer for model {model!r}", fix=f"route to one of {sorted(self.model_ids)}"
                )
            raise NotReady(f"the tokenizer of model {model} is still loading")
        try:
            return render_prompt(tokenizer, messages, tools or None, prune=prune)
        except TemplateError as exc:  # the chat template refused the conversation (e.g. role order)
            raise InvalidArgument("messages", f"model {model} cannot render them: {exc}") from exc
