"""The TensorRT-LLM request interface: validation, LoRA protocol, responses, error texts."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from cumulus.engine.adapter_cache import LoraTaskNotCached
from cumulus.engine.backend import GenerationEngine
from cumulus.errors import InvalidArgument
from services.inference.protocol import make_infer_fn, parse_request
from services.inference.scheduler import BatchScheduler
from services.inference.server import _send_error_messages_without_traceback

CAP = 32


def _inputs(text: str = "Hello", max_tokens: int = 4, **extra: Any) -> dict[str, np.ndarray]:
    data = {
        "text_input": np.array([[text.encode()]], dtype=object),
        "max_tokens": np.array([[max_tokens]], dtype=np.int32),
    }
    return data | {name: np.asarray(value) for name, value in extra.items()}


class _Request:
    """What PyTriton hands the infer function: the inputs under ``.data``."""

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self.data = data


@pytest.fixture
def scheduler(tiny_engine: GenerationEngine) -> Iterator[BatchScheduler]:
    scheduler = BatchScheduler(tiny_engine, name="tiny", max_batch_size=4, batch_delay_s=0.0)
    scheduler.start()
    yield scheduler
    scheduler.stop()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_inputs(text=""), "text_input"),
        (_inputs(max_tokens=0), "max_tokens"),
        (_inputs(max_tokens=CAP + 1), "max_tokens"),
        (_inputs(temperature=[[-1.0]]), "temperature"),
        (_inputs(top_p=[[0.0]]), "top_p"),
        (_inputs() | {"text_input": np.array([[b"a"], [b"b"]], dtype=object)}, "text_input"),
        (_inputs(text="word " * 9000), "text_input"),  # longer than tiny-llama's 8192 context
        (_inputs(lora_task_id=[[3]], lora_weights=[[[0.0]]], lora_config=[[[0, 0, 8]]]), "lora_weights"),
    ],
)
def test_bad_input_is_refused_naming_the_input(
    data: dict[str, np.ndarray], field: str, scheduler: Any
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_request(data, scheduler, CAP)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_unknown_lora_task_gives_tensorrt_llm_error_text(scheduler: BatchScheduler) -> None:
    with pytest.raises(LoraTaskNotCached) as caught:
        parse_request(_inputs(lora_task_id=np.array([[0]], dtype=np.uint64)), scheduler, CAP)
    assert str(caught.value) == "LoRA task 0 not found in cache. Please send LoRA weights with request"


def test_optional_inputs_are_read(scheduler: BatchScheduler) -> None:
    words = np.array([[b"stop", b"", b"\n\n"]], dtype=object)
    data = _inputs(stream=[[True]], temperature=[[0.5]], top_p=[[0.9]], stop_words=words)
    request, stream = parse_request(data, scheduler, CAP)
    assert stream is True
    assert (request.temperature, request.top_p, request.stop) == (0.5, pytest.approx(0.9), ("stop", "\n\n"))


async def test_stream_gives_deltas_that_join_to_the_unary_text(scheduler: BatchScheduler) -> None:
    infer = make_infer_fn(scheduler, CAP)
    unary = [r async for r in infer([_Request(_inputs(max_tokens=6))])]
    streamed = [r async for r in infer([_Request(_inputs(max_tokens=6, stream=[[True]]))])]
    assert len(unary) == 1 and len(streamed) > 1
    (response,) = unary[0]
    assert response["text_output"].dtype == object and response["text_output"].shape == (1, 1)
    assert response["completion_tokens"].dtype == np.int32
    assert int(response["completion_tokens"][0, 0]) == 6
    assert int(response["prompt_tokens"][0, 0]) == scheduler.engine.count_tokens("Hello")
    text = b"".join(batch[0]["text_output"][0, 0] for batch in streamed)
    assert text == response["text_output"][0, 0]
    assert int(streamed[-1][0]["completion_tokens"][0, 0]) == 6


def test_client_sees_our_error_message_without_a_traceback() -> None:
    from pytriton.proxy import inference

    _send_error_messages_without_traceback()
    ours = LoraTaskNotCached(5)
    assert inference.traceback.format_exception(None, ours, None) == [str(ours)]
    try:
        raise ValueError("internal")
    except ValueError as exc:
        theirs = exc
    expected = traceback.format_exception(None, theirs, theirs.__traceback__)
    assert inference.traceback.format_exception(None, theirs, theirs.__traceback__) == expected
