"""The prompt renderer: chat messages + tool schemas -> the prompt text one base model expects.

The gateway builds Triton's ``text_input`` with it and the trainer builds training examples with
it, so an adapter is always served the prompt shape it was trained on. Each model's own chat
template does the work (``add_generation_prompt=True``). Templates that ignore ``tools=`` (SmolLM2's)
get the schemas in the system message instead, worded like Qwen2.5's template words them, and past
assistant tool calls as ``<tool_call>`` text, so both model families see the same protocol.

``prune`` leaves out static parts an adapter has learned (its system prompt, its tool schemas);
``RenderedPrompt.pruned`` records what was actually removed. The trainer records the pruning an
adapter was trained with in its manifest (``PromptSpec``), and the gateway serves it the same way.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cumulus.errors import ArtifactError, InvalidArgument

PRUNABLE = ("system", "tools")
RENDERER = "cumulus.prompts.render_prompt"
"""The renderer an adapter manifest's ``prompt`` field names: this module's ``render_prompt``."""

_TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_POSTAMBLE = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    'within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
    '"arguments": <args-json-object>}\n</tool_call>'
)


@dataclass(frozen=True)
class RenderedPrompt:
    """The prompt text, and which prunable parts (``system``, ``tools``) were left out of it."""

    text: str
    pruned: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PromptSpec:
    """How an adapter's prompts are rendered: the ``prompt`` field of its manifest.

    The trainer writes ``{"renderer": RENDERER, "prune": [...], "tool_names": [...]}``; adapters
    trained before the field existed have none and were trained on whole prompts.
    """

    prune: tuple[str, ...] = ()
    tool_names: frozenset[str] | None = None
    """With ``tools`` pruned, the tools the adapter saw in training: it knows only those (None: not
    recorded, any tool is trusted)."""

    def knows_tools(self, names: Collection[str]) -> bool:
        """Whether an adapter trained without tool schemas has learned every tool in ``names``."""
        return "tools" not in self.prune or self.tool_names is None or set(names) <= self.tool_names

    def parts_to_prune(self, tool_names: Collection[str]) -> tuple[str, ...]:
        """The parts to leave out of a prompt offering ``tool_names``: the tool schemas stay in
        when it offers a tool the adapter never saw, since it cannot have learned that schema."""
        if self.knows_tools(tool_names):
            return self.prune
        return tuple(part for part in self.prune if part != "tools")

    @classmethod
    def from_manifest(cls, value: object) -> PromptSpec:
        """The spec a manifest's ``prompt`` field describes (None: whole prompts).

        ArtifactError when the field names another renderer or parts this renderer cannot prune:
        such an adapter cannot be served the prompt shape it was trained on.
        """
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ArtifactError(f"manifest field prompt must be an object, not {value!r}")
        renderer, prune = value.get("renderer", RENDERER), value.get("prune", [])
        if renderer != RENDERER:
            raise ArtifactError(f"manifest names prompt renderer {renderer!r}", fix=f"train with {RENDERER}")
        if not isinstance(prune, list) or not all(isinstance(part, str) for part in prune):
            raise ArtifactError(f"manifest field prompt.prune must be a list of names, not {prune!r}")
        unknown = sorted(set(prune) - set(PRUNABLE))
        if unknown:
            raise ArtifactError(
                f"manifest field prompt.prune names unknown parts {unknown}", fix=f"prune only {PRUNABLE}"
            )
        tool_names = value.get("tool_names")
        if tool_names is not None and (
            not isinstance(tool_names, list) or not all(isinstance(name, str) for name in tool_names)
        ):
            raise ArtifactError(
                f"manifest field prompt.tool_names must be a list of names, not {tool_names!r}"
            )
        return cls(prune=tuple(prune), tool_names=None if tool_names is None else frozenset(tool_names))


def render_prompt(
    tokenizer_or_model_id: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    prune: Collection[str] = (),
    models_dir: str | Path | None = None,
) -> RenderedPrompt:
    """Render ``messages`` (OpenAI-style dicts) and ``tools`` for one base model.

    ``tokenizer_or_model_id`` is a loaded tokenizer or a catalog model id; an id is resolved in
    ``models_dir`` (default: the configured model cache), converting the model once if needed.
    """
    unknown = set(prune) - set(PRUNABLE)
    if unknown:
        raise InvalidArgument("prune", f"unknown parts {sorted(unknown)}", fix=f"use {PRUNABLE}")
    if not messages:
        raise InvalidArgument("messages", "must not be empty")
    tokenizer = (
        _tokenizer_for(tokenizer_or_model_id, str(models_dir or ""))
        if isinstance(tokenizer_or_model_id, str)
        else tokenizer_or_model_id
    )
    chat = [_with_parsed_arguments(message) for message in messages]
    pruned: list[str] = []
    if "system" in prune and chat[0].get("role") == "system":
        chat.pop(0)
        pruned.append("system")
    if "tools" in prune and tools:
        tools = None
        pruned.append("tools")

    kwargs: dict[str, Any] = {}
    if "tools" in (tokenizer.chat_template or ""):
        if tools:
            kwargs["tools"] = list(tools)
    else:
        chat = _inline_tools(chat, tools or ())
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, **kwargs)
    return RenderedPrompt(text=text, pruned=pruned)


def _inline_tools(chat: list[dict[str, Any]], tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For templates without tool support: schemas into the system message, calls into text."""
    chat = [{**m, "content": _with_tool_calls(m)} if m.get("tool_calls") else m for m in chat]
    if not tools:
        return chat
    block = _TOOLS_PREAMBLE + "".join("\n" + json.dumps(dict(t)) for t in tools) + _TOOLS_POSTAMBLE
    if chat[0].get("role") == "system":
        return [{**chat[0], "content": f"{chat[0].get('content') or ''}\n\n{block}".lstrip()}, *chat[1:]]
    return [{"role": "system", "content": block}, *chat]


def _with_parsed_arguments(message: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI sends tool-call arguments as a JSON string; chat templates expect the object."""
    if not message.get("tool_calls"):
        return dict(message)
    calls = []
    for call in message["tool_calls"]:
        function = dict(call.get("function", call))
        if isinstance(function.get("arguments"), str):
            try:
                function["arguments"] = json.loads(function["arguments"])
            except ValueError as exc:
                raise InvalidArgument("messages", f"tool call arguments are not JSON: {exc}") from exc
        calls.append({**call, "function": function} if "function" in call else function)
    return {**message, "tool_calls": calls}


def _with_tool_calls(message: Mapping[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for call in message["tool_calls"]:
        function = call.get("function", call)
        payload = json.dumps({"name": function["name"], "arguments": function.get("arguments", {})})
        parts.append(f"<tool_call>\n{payload}\n</tool_call>")
    return "\n".join(p for p in parts if p)


@functools.lru_cache(maxsize=8)
def _tokenizer_for(model_id: str, models_dir: str) -> Any:
    from transformers import AutoTokenizer

    from cumulus.config import load_config
    from cumulus.models import ensure_model

    folder = ensure_model(model_id, models_dir or load_config().models_dir)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)
