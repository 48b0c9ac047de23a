"""Many Triton requests over a few long-lived ``ModelStreamInfer`` streams.

Opening a gRPC stream per request costs the gateway about as much CPU as everything else it does
for that request (measured: ~0.35 ms of Python per stream on each side), so requests share a small
pool of open streams instead, as tritonclient's ``start_stream`` users do. Each request travels
under a wire id unique within the gateway; Triton echoes the id on every response (errors
included), which routes the response back to its request. A stream that breaks (Triton
restarted, network) fails the requests waiting on it with UNAVAILABLE and is replaced by the next
request.

The price of sharing: one request cannot be cancelled in Triton on its own, so a request whose
client went away or timed out keeps generating until it ends, and its output is dropped. With
``lanes=0`` every request gets a stream of its own instead (``stream_alone``), which Triton
cancels with the request (TensorRT-LLM stops generating), at the CPU cost above.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from cumulus.errors import CumulusError, NotReady
from cumulus.trtllm import interface, tensors
from cumulus.trtllm.errors import DeadlineExceeded, error_from_text, translate_rpc_error

Reply: TypeAlias = "service_pb2.ModelStreamInferResponse | CumulusError"


class Lane:
    """One open ModelStreamInfer stream and the requests waiting for responses on it."""

    def __init__(self, stub: service_pb2_grpc.GRPCInferenceServiceStub, url: str) -> None:
        self.url = url
        self._call = stub.ModelStreamInfer()
        self._waiting: dict[str, asyncio.Queue[Reply]] = {}
        self._writing = asyncio.Lock()  # grpc takes one write at a time per stream
        self.failure: CumulusError | None = None
        self._reader = asyncio.create_task(self._read(), name="triton-lane")

    def expect(self, wire_id: str) -> asyncio.Queue[Reply]:
        """Start collecting the responses of ``wire_id``."""
        replies: asyncio.Queue[Reply] = asyncio.Queue()
        self._waiting[wire_id] = replies
        return replies

    def forget(self, wire_id: str) -> None:
        """Stop collecting ``wire_id``: later responses for it are dropped."""
        self._waiting.pop(wire_id, None)

    async def send(self, request: service_pb2.ModelInferRequest) -> None:
        if self.failure is not None:
            raise _fresh(self.failure)
        try:
            async with self._writing:
                await self._call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise translate_rpc_error(exc, self.url, request.model_name) from exc
        except asyncio.InvalidStateError as exc:  # the stream ended between the check and the write
            raise NotReady("the stream to Triton closed") from exc

    async def close(self) -> None:
        self._call.cancel()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _read(self) -> None:
        failure: CumulusError = NotReady("Triton closed the stream")
        try:
            async for message in self._call:
                replies = self._waiting.get(message.infer_response.id)
                if replies is not None:
                    replies.put_nowait(message)
        except grpc.aio.AioRpcError as exc:
            failure = translate_rpc_error(exc, self.url, "")
        finally:
            self.failure = failure
            for replies in self._waiting.values():
                replies.put_nowait(failure)


class Multiplexer:
    """Round-robins requests over ``lanes`` streams, (re)opened on demand."""

    def __init__(self, stub: service_pb2_grpc.GRPCInferenceServiceStub, url: str, lanes: int) -> None:
        self._stub = stub
        self.url = url
        self._lanes: list[Lane | None] = [None] * lanes
        self._turn = itertools.cycle(range(len(self._lanes)))
        self._ids = itertools.count(1)

    async def stream(
        self, request: service_pb2.ModelInferRequest, timeout_s: float
    ) -> AsyncIterator[service_pb2.ModelInferResponse]:
        """Send ``request``; yield its responses (with its own id) up to the final-flagged one.

        Raises the cumulus error of an error response (triton_errors), NotReady when the stream
        breaks, DeadlineExceeded when ``timeout_s`` passes.
        """
        lane = self._lane()
        own_id, wire_id = request.id, f"w{next(self._ids)}"
        replies = lane.expect(wire_id)
        # One timer per request, delivering the deadline like any other reply.
        late = DeadlineExceeded(f"model {request.model_name} did not answer within {timeout_s:.3g}s")
        timer = asyncio.get_running_loop().call_later(timeout_s, replies.put_nowait, late)
        request.id = wire_id
        request.parameters[interface.EMPTY_FINAL].bool_param = True
        try:
            await lane.send(request)
            while True:
                reply = await replies.get()
                if isinstance(reply, CumulusError):
                    raise _fresh(reply)
                if reply.error_message:
                    raise error_from_text(reply.error_message, request.model_name)
                response = reply.infer_response
                response.id = own_id
                yield response
                if tensors.is_final(response):
                    return
        finally:
            timer.cancel()
            request.id = own_id  # the caller may send the same request again (LoRA resend)
            lane.forget(wire_id)

    async def close(self) -> None:
        for lane in self._lanes:
            if lane is not None:
                await lane.close()

    def _lane(self) -> Lane:
        index = next(self._turn)
        lane = self._lanes[index]
        if lane is None or lane.failure is not None:
            lane = self._lanes[index] = Lane(self._stub, self.url)
        return lane


async def stream_alone(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    url: str,
    request: service_pb2.ModelInferRequest,
    timeout_s: float,
) -> AsyncIterator[service_pb2.ModelInferResponse]:
    """``request`` on a stream of its own, cancelled (in Triton too) when the caller stops reading."""
    request.parameters[interface.EMPTY_FINAL].bool_param = True
    call = stub.ModelStreamInfer(timeout=timeout_s)
    try:
        await call.write(request)  # inline, not from a request iterator: saves grpc a task
        await call.done_writing()
        async for reply in call:
            if reply.error_message:
                raise error_from_text(reply.error_message, request.model_name)
            yield reply.infer_response
            if tensors.is_final(reply.infer_response):
                return
    except grpc.aio.AioRpcError as exc:
        raise translate_rpc_error(exc, url, request.model_name) from exc
    finally:
        if not call.done():
            call.cancel()


def _fresh(error: CumulusError) -> CumulusError:
    """A copy of ``error`` to raise: one failure reaches many requests, each raises its own."""
    clone = type(error).__new__(type(error), *error.args)
    clone.__dict__.update(error.__dict__)
    return clone
