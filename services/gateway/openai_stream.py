"""``stream: true``: a served call as server-sent events in OpenAI's ``chat.completion.chunk`` format.

A role chunk, content deltas as the model produces them, a last choice chunk with the
``finish_reason``, a usage chunk (``choices: []``) when ``stream_options.include_usage`` asks for
it, then ``data: [DONE]``. The HTTP response starts with the first delta: a request refused or
failed before any output gets a real status and OpenAI error body, and the ``x-cumulus-route``
header is final by then (a canary falls back to live only before it has answered).

Where tools are offered, text that may still turn out to be a tool call (it starts like one:
``<tool_call>``, JSON, a code fence, ``name(``) is held back until it is clearly prose or the
answer ends; a whole call goes out as one ``tool_calls`` delta with its arguments as a JSON string.
A failure after output is an ``error`` event, which the SDKs raise. A client that goes away closes
the call's stream: the model call is cancelled and its event is still recorded, as CANCELLED.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from cumulus.errors import CumulusError
from services.gateway.calls import Call
from services.gateway.openai_answers import (
    check_format,
    completion_id,
    finish_reason,
    headers,
    tool_calls,
    usage,
)
from services.gateway.openai_errors import error_body, openai_error
from services.gateway.openai_schema import ChatOptions
from services.gateway.targets import Answer

_TOOL_TAG = "<tool_call>"
_IDENTIFIER_SO_FAR = re.compile(r"[A-Za-z_][\w.]*\(?")


def may_become_call(text: str) -> bool:
    """Whether ``text`` (an answer's beginning) could still be the start of a tool call."""
    head = text.lstrip()
    if not head or head[0] in "{[`":
        return True
    if head[0] == "<":
        return head.startswith(_TOOL_TAG) or _TOOL_TAG.startswith(head)
    return bool(_IDENTIFIER_SO_FAR.fullmatch(head)) or bool(re.match(r"[A-Za-z_][\w.]*\(", head))


class ChunkStream:
    """One streamed completion: the response once opened, and the chunks' shared fields."""

    def __init__(self, request: web.Request, call: Call, options: ChatOptions) -> None:
        self.request, self.call, self.options = request, call, options
        self.response: web.StreamResponse | None = None
        self.created = int(time.time())

    async def send(self, delta: dict[str, Any], finish: str | None = None) -> None:
        if self.response is None:
            self.response = web.StreamResponse(
                headers={
                    "content-type": "text/event-stream",
                    "cache-control": "no-cache",
                    **headers(self.call),
                }
            )
            await self.response.prepare(self.request)
            await self._event(self._chunk({"role": "assistant", "content": ""}))
        await self._event(self._chunk(delta, finish))

    async def finish(self, reason: str) -> web.StreamResponse:
        await self.send({}, reason)
        if self.options.include_usage:
            await self._event({**self._chunk(None), "choices": [], "usage": usage(self.call)})
        assert self.response is not None
        await self.response.write(b"data: [DONE]\n\n")
        await self.response.write_eof()
        return self.response

    async def fail(self, exc: BaseException) -> web.StreamResponse:
        """After output: an error event, then the end of the stream."""
        assert self.response is not None
        status = exc.http_status if isinstance(exc, CumulusError) else 500
        message = exc.message if isinstance(exc, CumulusError) else "internal error (logged by the gateway)"
        await self._event(error_body(status, message))
        await self.response.write_eof()
        return self.response

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": completion_id(self.call),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.options.model,
            "system_fingerprint": None,
            "choices": [] if delta is None else [
                {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            ],
        }  # fmt: skip
        if self.options.include_usage:
            chunk["usage"] = None
        return chunk

    async def _event(self, data: dict[str, Any]) -> None:
        assert self.response is not None
        await self.response.write(b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n")


async def stream_completion(
    request: web.Request, call: Call, options: ChatOptions, answers: AsyncGenerator[Answer, None]
) -> web.StreamResponse:
    """Serve ``answers`` (the Dispatcher's run of ``call``) as server-sent events."""
    out = ChunkStream(request, call, options)
    held, holding, text = "", bool(call.capture.tools), ""
    try:
        async with contextlib.aclosing(answers):  # a client gone closes the model call too
            async for _, delta in answers:
                if delta is None or not delta.text:
                    continue
                text += delta.text
                if holding:
                    held += delta.text
                    if may_become_call(held):
                        continue
                    holding, piece, held = False, held, ""
                else:
                    piece = delta.text
                await out.send({"content": piece})
        calls = tool_calls(held, call) if held else None
        if calls:
            await out.send({"tool_calls": calls})
        elif held:
            await out.send({"content": held})
        if not calls:
            check_format(text, options)
        return await out.finish(finish_reason(call, calls))
    except ConnectionResetError:
        raise  # the client went away: nothing to answer
    except Exception as exc:
        return openai_error(exc) if out.response is None else await out.fail(exc)
