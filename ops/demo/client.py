"""Replaying BFCL questions through the gateway, the way an application would send them.

The application: "turn a user's request into a call of the function it provides", one fixed
system prompt, the function docs as the request's ``tools``. The gateway's workflow discovery
puts every such request into one workflow (the system prompt names it), whatever the tools.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from cumulus.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from ops.demo.bfcl import BfclItem, json_schema, tool_name

SYSTEM_PROMPT = (
    "You are the API assistant of a developer platform. Answer every user request with a call "
    "to one of the provided functions, filling in the arguments from the request."
)
MAX_TOKENS = 128  # a call is 20-80 tokens; a runaway answer stops here


@dataclass(frozen=True)
class Answer:
    item: BfclItem
    request_id: str
    workflow: str
    text: str
    route_mode: int
    adapter_id: str
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    error: str = ""


def request_for(item: BfclItem, request_id: str) -> gateway_pb2.GenerateRequest:
    """The gateway request of one BFCL question (no ``workflow``: the gateway derives it)."""
    tools = [
        common_pb2.Tool(
            name=tool_name(f["name"]),
            description=f.get("description", ""),
            parameters_json=json.dumps(json_schema(f.get("parameters", {"type": "object"}))),
        )
        for f in item.functions
    ]
    return gateway_pb2.GenerateRequest(
        request_id=request_id,
        messages=[
            common_pb2.ChatMessage(role="system", content=SYSTEM_PROMPT),
            common_pb2.ChatMessage(role="user", content=item.question),
        ],
        tools=tools,
        params=common_pb2.GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0),
        session_key=request_id,
    )


class WorkloadClient:
    """Sends requests through the gateway with bounded concurrency, as one tenant's application."""

    def __init__(self, target: str, api_key: str, concurrency: int = 8, timeout_s: float = 300.0) -> None:
        self.target = target
        self.metadata = (("authorization", f"Bearer {api_key}"),)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.sent = 0

    async def replay(
        self,
        items: Sequence[BfclItem],
        prefix: str,
        on_answer: Callable[[Answer], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Answer]:
        """Send every item once (in order, ``concurrency`` at a time) until ``stop()`` says so."""
        answers: list[Answer] = []
        queue: asyncio.Queue[BfclItem] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]

            async def worker() -> None:
                while not queue.empty() and not (stop and stop()):
                    item = queue.get_nowait()
                    answer = await self._ask(stub, item, f"{prefix}-{self.sent:05d}-{item.id}")
                    answers.append(answer)
                    if on_answer:
                        on_answer(answer)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return answers

    async def _ask(self, stub: gateway_pb2_grpc.GatewayStub, item: BfclItem, request_id: str) -> Answer:
        self.sent += 1
        t0 = time.monotonic()
        try:
            reply = await stub.Generate(
                request_for(item, request_id), metadata=self.metadata, timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            elapsed = (time.monotonic() - t0) * 1000
            error = f"{exc.code().name}: {exc.details()}"
            return Answer(item, request_id, "", "", 0, "", elapsed, 0, 0, error)
        return Answer(
            item,
            request_id,
            reply.workflow,
            reply.text,
            reply.route.mode,
            reply.route.target.adapter_id,
            reply.latency_ms,
            reply.usage.prompt_tokens,
            reply.usage.completion_tokens,
        )
