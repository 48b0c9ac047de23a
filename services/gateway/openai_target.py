"""The live model as an OpenAI-compatible endpoint (``live.base_url``): a hosted frontier model, or
any server speaking ``/v1/chat/completions``, instead of Triton's ``live`` model.

The gateway sends it the request's whole conversation (the live model is never given a pruned
prompt) with streaming and ``stream_options.include_usage``, and accounts its deltas on the call's
Outcome like Triton's: the captured event, detection, training a student on Triton, shadow,
canary and rollback need nothing else. Past tool calls, stored as the canonical ``<tool_call>``
text, go out as OpenAI ``tool_calls`` (the ids the tool messages answer); the endpoint's tool
calls come back as that same canonical text, the one format the rest of the loop reads. Its
failures become the gateway's errors (429 keeps the endpoint's ``retry-after``), so a canary
falls back and clients see the usual statuses. The API key comes from an environment variable
and is never logged nor captured.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp

from cumulus.config import LiveEndpointConfig
from cumulus.errors import CumulusError, InvalidArgument, NotReady, ResourceExhausted
from cumulus.graders.tool_parsing import ToolCall, parse_tool_calls, render_tool_calls
from cumulus.logs import get_logger
from cumulus.trtllm.tensors import Delta
from services.gateway.openai_answers import new_call_id, openai_tool_call
from services.gateway.rendering import ChatPrompt

log = get_logger("gateway")


class OpenAIEndpoint:
    """One OpenAI-compatible endpoint serving as the live model (see the module docstring)."""

    def __init__(self, config: LiveEndpointConfig, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        key = (os.environ if env is None else env).get(config.api_key_env, "")
        self._headers = {
            "content-type": "application/json",
            **({"authorization": f"Bearer {key}"} if key else {}),
        }
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made in the serving loop, on first use
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.config.max_connections),
                timeout=aiohttp.ClientTimeout(
                    total=self.config.timeout_s, sock_connect=self.config.connect_timeout_s
                ),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def stream(self, prompt: ChatPrompt, timeout_s: float) -> AsyncIterator[Delta]:
        """The endpoint's answer to a chat call's ``prompt`` as Deltas (text, token counts so far)."""
        body = request_body(prompt, self.config.model)
        timeout = aiohttp.ClientTimeout(total=min(timeout_s, self.config.timeout_s))
        try:
            async with self._client().post(
                self.url, json=body, headers=self._headers, timeout=timeout
            ) as response:
                if response.status != 200:
                    raise await _upstream_error(response)
                async for delta in _deltas(response):
                    yield delta
        except aiohttp.ClientError as exc:
            raise NotReady(
                f"live endpoint {self.config.base_url}: {type(exc).__name__}: {exc}"[:500]
            ) from exc
        except TimeoutError as exc:
            raise NotReady(
                f"live endpoint {self.config.base_url}: no answer within {timeout.total:g} s"
            ) from exc


def request_body(prompt: ChatPrompt, model: str) -> dict[str, Any]:
    """The endpoint's request: the whole conversation (never pruned) with the call's sampling."""
    sampling = prompt.sampling
    body: dict[str, Any] = {
        "model": model,
        "messages": openai_messages(prompt.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
    }
    if sampling.top_p:
        body["top_p"] = sampling.top_p
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if prompt.tools:
        body["tools"] = list(prompt.tools)  # already OpenAI's function tools (rendering.chat_tools)
    return body


def openai_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The renderer's chat messages (rendering.chat_messages) as an OpenAI endpoint takes them: an
    assistant's ``<tool_call>`` text becomes ``tool_calls`` whose ids are the ones the following
    tool messages answer, and a tool message carries its ``tool_call_id`` (and no ``name``)."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        entry = dict(message)
        content = str(entry.get("content") or "")
        if entry["role"] == "tool":
            entry.pop("name", None)
            entry.setdefault("tool_call_id", "")
        calls = (
            parse_tool_calls(content) if entry["role"] == "assistant" and "<tool_call>" in content else None
        )
        if calls:
            answers = [str(m.get("tool_call_id") or "") for m in messages[i + 1 :] if m["role"] == "tool"]
            entry["content"] = None
            entry["tool_calls"] = [
                openai_tool_call(c, answers[j] if j < len(answers) and answers[j] else new_call_id())
                for j, c in enumerate(calls)
            ]
        out.append(entry)
    return out


async def _deltas(response: aiohttp.ClientResponse) -> AsyncIterator[Delta]:
    """Server-sent events -> Deltas; tool-call fragments are joined and sent as one last text delta."""
    prompt_tokens = completion_tokens = chunks = 0
    calls: dict[int, dict[str, str]] = {}
    async for line in response.content:
        data = line.decode("utf-8", "replace").strip()
        if not data.startswith("data:"):
            continue
        data = data[len("data:") :].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise NotReady(f"live endpoint failed mid-answer: {str(chunk['error'])[:300]}")
        usage = chunk.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
        completion_tokens = int(usage.get("completion_tokens") or completion_tokens)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(int(call.get("index", 0)), {"name": "", "arguments": ""})
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            if delta.get("content"):
                chunks += 1
                yield Delta(delta["content"], prompt_tokens, max(completion_tokens, chunks))
    if calls:
        yield Delta(_rendered(calls), prompt_tokens, max(completion_tokens, chunks + 1))
    elif prompt_tokens or completion_tokens > chunks:  # the usage chunk comes last: account it
        yield Delta("", prompt_tokens, max(completion_tokens, chunks))


def _rendered(calls: dict[int, dict[str, str]]) -> str:
    parsed = []
    for _, call in sorted(calls.items()):
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except ValueError:
            arguments = {"_raw": call["arguments"]}  # kept as written: the grader sees it is wrong
        parsed.append(
            ToolCall(call["name"], arguments if isinstance(arguments, dict) else {"_raw": arguments})
        )
    return render_tool_calls(parsed)


async def _upstream_error(response: aiohttp.ClientResponse) -> CumulusError:
    text = (await response.text())[:500]
    try:
        message = str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = text
    where = f"live endpoint answered {response.status}: {message}"
    log.warning("live_endpoint.refused", status=response.status, error=message[:300])
    if response.status == 400:
        return InvalidArgument("messages", where)
    if response.status == 429:
        retry = response.headers.get("retry-after", "1")
        return ResourceExhausted(
            where, retry_after_s=float(retry) if retry.replace(".", "", 1).isdigit() else 1.0
        )
    return NotReady(where)  # 401/403/404 (our configuration), 5xx (theirs): the live model is not available
