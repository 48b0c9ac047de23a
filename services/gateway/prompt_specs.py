"""Which prompt shape each adapter was trained on, so the gateway serves it that same shape.

An adapter trained with ``data.prune`` (services/trainer) never saw the parts it pruned (the
workflow's system prompt, its tool schemas): it learned them. Its manifest's ``prompt`` field
records what was pruned (cumulus.prompts.PromptSpec), and the gateway renders that adapter's prompts
without those parts. The live model and bare targets (``lora_task_id`` 0) always get whole prompts.

The spec is read from the adapter directory (the one the LoRA resend reads, adapters.adapter_dir)
on an adapter's first request, in a thread, and kept. A manifest the gateway cannot honour (unknown
parts, another renderer) is kept as its error: a committed manifest never changes. A missing
adapter is not remembered, since its artifact may still arrive. An adapter without a usable spec
is not served: as a canary the live model answers instead (dispatch.py), as a shadow copy it is
graded as a candidate error (shadow.py). An adapter trained without tool schemas knows only the
tools it saw (``PromptSpec.tool_names``): for a request offering another one it is not served as
a candidate either, and once promoted it gets that request's schemas in its prompt.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from cumulus.artifacts import MANIFEST, ArtifactStore
from cumulus.errors import ArtifactError, InvalidArgument, NotFound, NotReady
from cumulus.logs import get_logger
from cumulus.prompts import PromptSpec
from cumulus.v1 import common_pb2
from services.gateway.adapters import adapter_dir
from services.gateway.calls import Call

log = get_logger("gateway")

WHOLE = PromptSpec()
"""The spec of the live model and of adapters trained on whole prompts."""
_KEEP = 256


class PromptSpecSource(Protocol):
    """Reads the prompt spec of the adapter a RouteTarget names."""

    async def read(self, target: common_pb2.RouteTarget, workflow: str) -> PromptSpec: ...


class ArtifactPromptSpecs:
    """PromptSpecSource reading adapter manifests in the local artifact store."""

    def __init__(self, artifacts_dir: Path) -> None:
        self.store = ArtifactStore(artifacts_dir)

    async def read(self, target: common_pb2.RouteTarget, workflow: str) -> PromptSpec:
        return await asyncio.to_thread(read_prompt_spec, adapter_dir(self.store, target, workflow))


def read_prompt_spec(folder: Path) -> PromptSpec:
    """The prompt spec in the manifest of the adapter directory ``folder``.

    NotFound when there is no adapter there; ArtifactError when its manifest is malformed or names a
    pruning the gateway cannot do; NotReady when the file cannot be read right now.
    """
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise NotFound(f"adapter not found at {folder}", fix="train and register it first") from exc
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise NotReady(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} is not a JSON object")
    try:
        return PromptSpec.from_manifest(manifest.get("prompt"))
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc.message}", fix=exc.fix) from exc


class AdapterPrompts:
    """The prompt specs of the adapters requests are routed to (see the module docstring)."""

    def __init__(self, source: PromptSpecSource) -> None:
        self.source = source
        self._known: OrderedDict[tuple[str, str, str], PromptSpec | ArtifactError] = OrderedDict()

    async def load(self, target: common_pb2.RouteTarget, workflow: str) -> PromptSpec:
        """``target``'s spec, read on its first use; raises when its adapter cannot be served."""
        if not target.lora_task_id:
            return WHOLE
        key = _key(target, workflow)
        known = self._known.get(key)
        if known is None:
            known = await self._read(target, workflow)
            self._known[key] = known
            while len(self._known) > _KEEP:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(key)
        if isinstance(known, ArtifactError):  # a fresh error each time: a kept one would grow its traceback
            raise ArtifactError(known.message, fix=known.fix)
        return known

    def loaded(self, target: common_pb2.RouteTarget, workflow: str) -> PromptSpec | None:
        """``target``'s spec if ``load`` has read it (WHOLE for a bare model); None otherwise."""
        if not target.lora_task_id:
            return WHOLE
        known = self._known.get(_key(target, workflow))
        return known if isinstance(known, PromptSpec) else None

    def prune_for(
        self, target: common_pb2.RouteTarget, workflow: str, tool_names: Collection[str] = ()
    ) -> tuple[str, ...]:
        """The parts to leave out of ``target``'s prompt; ``load`` must have read its spec.

        Tool schemas stay in when the request offers a tool the adapter never saw: it cannot have
        learned that schema (only a promoted adapter gets here; a candidate falls back instead).
        """
        spec = self.loaded(target, workflow)
        if spec is None:
            raise NotReady(f"the prompt spec of adapter {target.adapter_id} is not loaded")
        return spec.parts_to_prune(tool_names)

    async def prompt_for(
        self, call: Call, target: common_pb2.RouteTarget, *, candidate: bool
    ) -> tuple[str, tuple[str, ...]]:
        """``call``'s prompt as ``target`` gets it, and the parts left out of it.

        A candidate is refused (InvalidArgument) for a request offering a tool its adapter never
        saw, or for a prompt the client rendered itself (the KServe drop-in) where its adapter was
        trained on pruned prompts; the live target, having nothing better to serve, gets it whole.
        """
        spec = await self.load(target, call.workflow.name)
        tool_names = [tool.name for tool in call.capture.tools]
        if not spec.knows_tools(tool_names):
            unknown = sorted(set(tool_names) - (spec.tool_names or frozenset()))
            log.warning(
                "adapter.unknown_tools",
                workflow=call.workflow.name,
                adapter=target.adapter_id,
                request_id=call.request_id,
                tools=unknown,
                candidate=candidate,
            )
            if candidate:
                raise InvalidArgument(
                    "tools",
                    f"adapter {target.adapter_id} was trained without tool schemas and never saw {unknown}",
                    fix="let the collector nominate the workflow again with traffic that offers them",
                )
        prune = self.prune_for(target, call.workflow.name, tool_names) if call.prompt.prunable else ()
        if spec.prune and not call.prompt.prunable and candidate:
            raise InvalidArgument(
                "text_input",
                f"adapter {target.adapter_id} was trained without {list(spec.prune)} in its prompts, "
                "and a prompt rendered by the client cannot be pruned",
                fix="send chat messages through cumulus.v1.Gateway",
            )
        return call.prompt.text(target.model, prune), prune

    async def _read(self, target: common_pb2.RouteTarget, workflow: str) -> PromptSpec | ArtifactError:
        try:
            spec = await self.source.read(target, workflow)
        except ArtifactError as exc:
            log.warning(
                "adapter.prompt_spec_refused", workflow=workflow, adapter=target.adapter_id, error=str(exc)
            )
            return exc
        if spec.prune:
            log.info(
                "adapter.prompt_pruned", workflow=workflow, adapter=target.adapter_id, prune=list(spec.prune)
            )
        return spec


def _key(target: common_pb2.RouteTarget, workflow: str) -> tuple[str, str, str]:
    """What adapter_dir resolves the adapter's directory from."""
    return workflow, target.adapter_id, target.adapter_uri
