"""Sending a workload through the gateway, the way one tenant's application would.

Requests go out ``concurrency`` at a time; after each answer the workload's users may send
feedback on it (ops.demo.workloads.base), through the gateway's ``Feedback`` call, as a person
reviewing answers would, moments after the answer. Feedback that fails is counted, not fatal:
the loop must cope with feedback that never arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from cumulus.tls import ClientTLS, gateway_channel
from cumulus.v1 import gateway_pb2_grpc
from ops.demo.workloads.base import Workload


@dataclass(frozen=True)
class Answer:
    item: Any
    request_id: str
    workflow: str
    text: str
    route_mode: int
    adapter_id: str
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    error: str = ""


class WorkloadClient:
    """Sends a workload's requests (and its users' feedback) through the gateway."""

    def __init__(
        self,
        target: str,
        api_key: str,
        workload: Workload,
        concurrency: int = 8,
        timeout_s: float = 300.0,
        tls: ClientTLS | None = None,
    ) -> None:
        self.target = target
        self.tls = tls
        self.metadata = (("authorization", f"Bearer {api_key}"),)
        self.workload = workload
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.sent = 0
        self.feedback_sent = 0
        self.feedback_failed = 0

    async def replay(
        self,
        items: Sequence[Any],
        prefix: str,
        on_answer: Callable[[Answer], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Answer]:
        """Send every item once (in order, ``concurrency`` at a time) until ``stop()`` says so."""
        answers: list[Answer] = []
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        async with gateway_channel(self.target, self.tls) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]

            async def worker() -> None:
                while not queue.empty() and not (stop and stop()):
                    item = queue.get_nowait()
                    answer = await self._ask(stub, item, f"{prefix}-{self.sent:05d}-{item.id}")
                    answers.append(answer)
                    if on_answer:
                        on_answer(answer)
                    if not answer.error:
                        await self._review(stub, answer)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return answers

    async def _ask(self, stub: gateway_pb2_grpc.GatewayStub, item: Any, request_id: str) -> Answer:
        self.sent += 1
        t0 = time.monotonic()
        try:
            reply = await stub.Generate(
                self.workload.request(item, request_id), metadata=self.metadata, timeout=self.timeout_s
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

    async def _review(self, stub: gateway_pb2_grpc.GatewayStub, answer: Answer) -> None:
        note = self.workload.feedback(answer.item, answer.request_id, answer.text)
        if note is None:
            return
        try:
            await stub.Feedback(note, metadata=self.metadata, timeout=30.0)
            self.feedback_sent += 1
        except grpc.aio.AioRpcError:
            self.feedback_failed += 1
