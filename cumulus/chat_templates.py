"""A model's chat template rendered the way transformers renders it, without transformers.

The gateway renders every request's prompt, and a proxy that runs as many replicas should not
carry torch for it: importing transformers for ``AutoTokenizer.apply_chat_template`` held ~1.1 GiB
resident. A converted model folder (cumulus.models.store) already holds what rendering needs: its
``chat_template.jinja`` and, in ``tokenizer_config.json``, the special tokens templates refer to
(``bos_token``, ``eos_token``...). ``ChatTemplate`` compiles the template in the environment
transformers 5 uses (utils/chat_template_utils.py: a sandboxed, immutable jinja2 environment with
``trim_blocks``, ``lstrip_blocks`` and loop controls; ``tojson`` without HTML escaping;
``raise_exception``; ``strftime_now``; a no-op ``{% generation %}`` tag) and renders with the same
variables (``messages``, ``tools``, ``documents``, ``add_generation_prompt`` and the special
tokens), so its text equals the tokenizer's, character for character (tests/unit/test_chat_templates.py
checks every catalog model). It duck-types the two members ``cumulus.prompts.render_prompt`` uses.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cumulus.errors import NotReady

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
"""transformers' SPECIAL_TOKENS_ATTRIBUTES: the names its ``special_tokens_map`` passes to templates."""


class _Generation(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}``: transformers tracks assistant spans with it; a
    prompt only needs the text inside."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda format: dt.datetime.now().strftime(format)
    return env


class ChatTemplate:
    """One model's chat template and special tokens (see the module docstring)."""

    def __init__(self, template: str, special_tokens: Mapping[str, str]) -> None:
        self.chat_template = template
        self.special_tokens = dict(special_tokens)
        self._compiled = _environment().from_string(template)

    @classmethod
    def from_folder(cls, folder: Path) -> ChatTemplate:
        """From a converted model folder; NotReady naming the fix when it has not been converted."""
        template_file, config_file = folder / "chat_template.jinja", folder / "tokenizer_config.json"
        if not template_file.is_file() or not config_file.is_file():
            raise NotReady(
                f"model folder {folder} has no chat template yet",
                fix="convert the models once with `cumulus prepare --models` (or start Triton, which does)",
            )
        config = json.loads(config_file.read_text())
        tokens = {name: _token_text(config[name]) for name in SPECIAL_TOKENS if config.get(name) is not None}
        return cls(template_file.read_text(), tokens)

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]],
        *,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """The prompt text, as ``tokenizer.apply_chat_template(..., tokenize=False)`` returns it."""
        if tokenize:
            raise ValueError("ChatTemplate renders text only (tokenize=False)")
        if not conversation:
            raise ValueError(
                "Cannot apply chat template to an empty conversation. Provide at least one message."
            )
        return self._compiled.render(
            messages=list(conversation),
            tools=list(tools) if tools is not None else None,
            documents=documents,
            add_generation_prompt=add_generation_prompt,
            **{**self.special_tokens, **kwargs},
        )


def _token_text(value: Any) -> str:
    """A special token as tokenizer_config.json stores it: its text, or an AddedToken's ``content``."""
    return str(value["content"]) if isinstance(value, Mapping) else str(value)
