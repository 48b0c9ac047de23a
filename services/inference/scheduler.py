"""Dynamic batching in front of one ``GenerationEngine``: the only thread that runs the model.

Triton hands each request to our infer function on its own (see server.py for why Triton's batcher
is off); requests that arrive within ``batch_delay_s`` of each other, up to ``max_batch_size``,
are generated as one batch. Each request gets its chunks back on its own asyncio queue, so a
request that finishes early is answered at once and an error in one batch fails only that batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cumulus.engine.backend import Chunk, GenerationEngine, GenerationRequest
from cumulus.errors import NotReady
from cumulus.logs import get_logger

log = get_logger("inference")


@dataclass
class _Job:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    results: asyncio.Queue[Chunk | BaseException]

    def send(self, item: Chunk | BaseException) -> None:
        # Called from the worker thread; the queue belongs to the caller's event loop.
        self.loop.call_soon_threadsafe(self.results.put_nowait, item)


class BatchScheduler:
    """Owns one engine and a worker thread that serves submitted requests in batches."""

    def __init__(
        self, engine: GenerationEngine, *, name: str, max_batch_size: int, batch_delay_s: float
    ) -> None:
        self.engine = engine
        self.name = name
        self.max_batch_size = max_batch_size
        self.batch_delay_s = batch_delay_s
        self._pending: queue.Queue[_Job | None] = queue.Queue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"generate-{name}", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the running batch, fail what is still queued, and join the worker."""
        self._stopped.set()
        self._pending.put(None)
        self._thread.join(timeout_s)

    async def submit(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Queue ``request`` and yield its chunks; the last one has a ``finish_reason``."""
        if self._stopped.is_set():
            raise NotReady(f"model {self.name} is shutting down")
        job = _Job(request, asyncio.get_running_loop(), asyncio.Queue())
        self._pending.put(job)
        while True:
            item = await job.results.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.finish_reason is not None:
                return

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._generate(batch)
        while True:  # drain: nobody will serve these any more
            try:
                job = self._pending.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.send(NotReady(f"model {self.name} is shutting down"))

    def _next_batch(self) -> list[_Job] | None:
        first = self._pending.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.batch_delay_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                # Past the deadline, still take whatever queued up while the last batch ran.
                job = self._pending.get(timeout=remaining) if remaining > 0 else self._pending.get_nowait()
            except queue.Empty:
                break
            if job is None:  # stop requested: serve what we hold, then leave
                self._pending.put(None)
                break
            batch.append(job)
        return batch

    def _generate(self, batch: list[_Job]) -> None:
        started = time.monotonic()
        finished: dict[int, Chunk] = {}
        try:
            for chunks in self.engine.stream([job.request for job in batch]):
                for chunk in chunks:
                    batch[chunk.index].send(chunk)
                    if chunk.finish_reason is not None:
                        finished[chunk.index] = chunk
        except Exception as exc:
            log.exception("batch.failed", model=self.name, size=len(batch))
            for index, job in enumerate(batch):
                if index not in finished:
                    job.send(exc)
            return
        seconds = time.monotonic() - started
        generated = sum(c.completion_tokens for c in finished.values())
        log.info(
            "batch.done",
            model=self.name,
            size=len(batch),
            prompt_tokens=sum(c.prompt_tokens for c in finished.values()),
            completion_tokens=generated,
            seconds=round(seconds, 3),
            tokens_per_s=round(generated / seconds, 1) if seconds > 0 else None,
        )
