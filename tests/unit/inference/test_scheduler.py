"""BatchScheduler: dynamic batching, per-request results, failure isolation, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest

from cumulus.engine.backend import Chunk, GenerationEngine, GenerationRequest
from cumulus.errors import NotReady
from services.inference.scheduler import BatchScheduler


class RecordingEngine:
    """Answers each prompt with its upper-case form; records the size of every batch."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Chunk]]:
        self.batches.append(len(requests))
        if any(r.prompt == "boom" for r in requests):
            raise RuntimeError("model exploded")
        yield [Chunk(i, r.prompt.upper(), 1, 1, "length") for i, r in enumerate(requests)]


async def _collect(scheduler: BatchScheduler, prompt: str) -> str:
    return "".join([c.text async for c in scheduler.submit(GenerationRequest(prompt, 1))])


@pytest.fixture
def recording() -> Iterator[tuple[BatchScheduler, RecordingEngine]]:
    engine = RecordingEngine()
    scheduler = BatchScheduler(engine, name="fake", max_batch_size=2, batch_delay_s=0.2)  # type: ignore[arg-type]
    scheduler.start()
    yield scheduler, engine
    scheduler.stop()


async def test_requests_arriving_together_share_a_batch_up_to_the_cap(
    recording: tuple[BatchScheduler, RecordingEngine],
) -> None:
    scheduler, engine = recording
    texts = await asyncio.gather(*(_collect(scheduler, p) for p in ["a", "b", "c"]))
    assert texts == ["A", "B", "C"]
    assert engine.batches == [2, 1]


async def test_a_failed_batch_fails_only_its_own_requests(
    recording: tuple[BatchScheduler, RecordingEngine],
) -> None:
    scheduler, _ = recording
    with pytest.raises(RuntimeError, match="model exploded"):
        await _collect(scheduler, "boom")
    assert await _collect(scheduler, "fine") == "FINE"


async def test_submit_after_stop_is_refused(recording: tuple[BatchScheduler, RecordingEngine]) -> None:
    scheduler, _ = recording
    scheduler.stop()
    with pytest.raises(NotReady):
        await _collect(scheduler, "late")


async def test_concurrent_requests_match_generation_alone(tiny_engine: GenerationEngine) -> None:
    scheduler = BatchScheduler(tiny_engine, name="tiny", max_batch_size=8, batch_delay_s=0.05)
    scheduler.start()
    try:
        prompts = ["Hello", "def fib(n):", "One two three four five"]
        texts = await asyncio.gather(*(_collect_n(scheduler, p, 6 + i) for i, p in enumerate(prompts)))
    finally:
        scheduler.stop()
    alone = [tiny_engine.generate([GenerationRequest(p, 6 + i)])[0].text for i, p in enumerate(prompts)]
    assert texts == alone


async def _collect_n(scheduler: BatchScheduler, prompt: str, max_tokens: int) -> str:
    return "".join([c.text async for c in scheduler.submit(GenerationRequest(prompt, max_tokens))])
