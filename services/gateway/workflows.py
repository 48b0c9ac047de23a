"""Workflow discovery: a stable fingerprint of a request's prompt template.

Clients may name their workflow; when they don't, requests built from the same template should
still land in the same workflow. The template is what stays fixed between requests of one kind:

- the system prompt, when there is one: it names the application. Tools are then ignored, as
  is the user turn (pure data: a ticket, a document), because apps that pick tools per request
  (retrieved tools, per-user plugins, function calling as a service) would otherwise split into
  a workflow per tool set;
- else the tool names, when the request declares tools;
- otherwise the *static prefix* of the first user message: its start, up to the first sign of
  variable content (a digit, a quote, a bracket), at most ``PREFIX_CHARS`` characters.

Text is normalised first (whitespace collapsed, case folded, digits masked), so a date or a
counter in a system prompt does not split a workflow. The tenant is part of the fingerprint:
two tenants with the same template get different workflows (their data is never mixed).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PREFIX_CHARS = 48
DERIVED_PREFIX = "wf-"
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_VARIABLE = re.compile(r"[\d\"'`{\[(<]")


@dataclass(frozen=True)
class Workflow:
    """The workflow a request belongs to, and the fingerprint of its template."""

    name: str
    fingerprint: str
    derived: bool
    """True when the name comes from the fingerprint rather than the client."""


def normalise(text: str) -> str:
    """Case-folded, whitespace-collapsed text with every run of digits replaced by ``#``."""
    return _DIGITS.sub("#", _SPACE.sub(" ", text).strip().casefold())


def static_prefix(text: str) -> str:
    """The leading part of ``text`` before anything that looks variable (see the module docstring)."""
    collapsed = _SPACE.sub(" ", text).strip()
    match = _VARIABLE.search(collapsed)
    head = collapsed[: match.start()] if match else collapsed
    return normalise(head[:PREFIX_CHARS])


def fingerprint(tenant: str, system_prompt: str, tool_names: Iterable[str], user_text: str) -> str:
    """Fingerprint of a chat request's template: 16 hex characters."""
    tools = sorted(set(tool_names))
    if system_prompt:
        parts = ["chat", tenant, normalise(system_prompt), ""]
    elif tools:
        parts = ["chat", tenant, "", ",".join(tools)]
    else:
        parts = ["chat", tenant, "", "", static_prefix(user_text)]
    return _digest(parts)


def text_fingerprint(tenant: str, prompt_text: str) -> str:
    """Fingerprint of an already-rendered prompt (the KServe drop-in): its static prefix."""
    return _digest(["text", tenant, static_prefix(prompt_text)])


def resolve_chat(
    tenant: str, requested: str, roles_and_contents: Sequence[tuple[str, str]], tool_names: Iterable[str]
) -> Workflow:
    """The workflow of a chat request: the client's name if given, else the derived one."""
    system = "\n".join(content for role, content in roles_and_contents if role == "system")
    first_user = next((content for role, content in roles_and_contents if role == "user"), "")
    template = fingerprint(tenant, system, tool_names, first_user)
    return _workflow(requested, template)


def resolve_text(tenant: str, requested: str, prompt_text: str) -> Workflow:
    """The workflow of a raw-prompt request (KServe drop-in)."""
    return _workflow(requested, text_fingerprint(tenant, prompt_text))


def _workflow(requested: str, template: str) -> Workflow:
    if requested:
        return Workflow(name=requested, fingerprint=template, derived=False)
    return Workflow(name=DERIVED_PREFIX + template, fingerprint=template, derived=True)


def _digest(parts: list[str]) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).hexdigest()
