"""GenerationEngine on tiny-llama (real model, fp32) and on a scripted fake (exact token sequences)."""

from __future__ import annotations

from typing import Any

from cumulus.engine.backend import Chunk, GenerationEngine, GenerationRequest

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "Hello",
    "def fib(n):\n    ",
    "One two three four five six seven eight nine ten eleven twelve",
]


def _requests(**overrides: Any) -> list[GenerationRequest]:
    return [GenerationRequest(p, max_tokens=5 + 4 * i, **overrides) for i, p in enumerate(PROMPTS)]


def _joined(engine: GenerationEngine, requests: list[GenerationRequest]) -> list[tuple[str, list[Chunk]]]:
    per_request: list[list[Chunk]] = [[] for _ in requests]
    for chunks in engine.stream(requests):
        for chunk in chunks:
            per_request[chunk.index].append(chunk)
    return [("".join(c.text for c in chunks), chunks) for chunks in per_request]


def test_batched_greedy_equals_each_request_alone(tiny_engine: GenerationEngine) -> None:
    requests = _requests()
    batched = tiny_engine.generate(requests)
    alone = [tiny_engine.generate([r])[0] for r in requests]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in alone]
    assert len({c.text for c in batched}) == len(requests)  # the prompts really differ


def test_max_tokens_is_honoured_exactly(tiny_engine: GenerationEngine) -> None:
    for request, result in zip(_requests(), tiny_engine.generate(_requests()), strict=True):
        assert result.finish_reason == "length"
        assert result.completion_tokens == request.max_tokens


def test_token_counts(tiny_engine: GenerationEngine) -> None:
    results = tiny_engine.generate(_requests())
    assert [r.prompt_tokens for r in results] == [tiny_engine.count_tokens(p) for p in PROMPTS]
    for _, chunks in _joined(tiny_engine, _requests()):
        counts = [c.completion_tokens for c in chunks]
        assert counts == sorted(counts) and chunks[-1].finish_reason is not None


def test_stop_word_cuts_output(tiny_engine: GenerationEngine) -> None:
    request = GenerationRequest(PROMPTS[3], max_tokens=20)
    full = tiny_engine.generate([request])[0].text
    stop = full[len(full) // 2 : len(full) // 2 + 4]
    result = tiny_engine.generate([GenerationRequest(PROMPTS[3], max_tokens=20, stop=(stop,))])[0]
    assert result.text == full[: full.find(stop)]
    assert result.finish_reason == "stop"
    assert result.completion_tokens < 20


def test_streamed_deltas_concatenate_to_unary_text(tiny_engine: GenerationEngine) -> None:
    requests = _requests()
    streamed = _joined(tiny_engine, requests)
    assert [text for text, _ in streamed] == [c.text for c in tiny_engine.generate(requests)]
    assert all(len(chunks) > 1 for _, chunks in streamed)


def test_top_p_near_zero_is_greedy(tiny_engine: GenerationEngine) -> None:
    greedy = tiny_engine.generate(_requests())
    sampled = tiny_engine.generate(_requests(temperature=0.8, top_p=1e-6))
    assert [c.text for c in sampled] == [c.text for c in greedy]


def test_a_subnormal_temperature_is_greedy_not_nan(tiny_engine: GenerationEngine) -> None:
    # 7e-45 (a float32 subnormal, from the fuzz run) made logits / t overflow to inf and softmax NaN.
    greedy = tiny_engine.generate(_requests())
    for temperature in (7.00649e-45, 1e-30):
        sampled = tiny_engine.generate(_requests(temperature=temperature))
        assert [c.text for c in sampled] == [c.text for c in greedy]


def test_sampling_keeps_the_limits(tiny_engine: GenerationEngine) -> None:
    for request, result in zip(_requests(), tiny_engine.generate(_requests(temperature=1.5)), strict=True):
        assert result.completion_tokens == request.max_tokens


def test_eos_ends_generation(scripted_engine: Any) -> None:
    engine = scripted_engine({"a": [19556, 905], "b": [19556]})  # "Hello world", "Hello"
    results = engine.generate([GenerationRequest("a", 10), GenerationRequest("b", 10)])
    assert [(r.text, r.completion_tokens, r.finish_reason) for r in results] == [
        ("Hello world", 3, "stop"),
        ("Hello", 2, "stop"),
    ]


def test_split_utf8_character_is_never_streamed_half(scripted_engine: Any) -> None:
    engine = scripted_engine({"a": [19556, 10813, 38887, 905]})  # "Hello", "🙂" in two tokens, " world"
    text, chunks = _joined(engine, [GenerationRequest("a", 10)])[0]
    assert text == "Hello🙂 world"
    assert all("\ufffd" not in c.text for c in chunks)


def test_stop_string_across_tokens_is_held_back_while_streaming(scripted_engine: Any) -> None:
    engine = scripted_engine({"a": [19556, 38634, 30, 905]})  # "Hello", "Paris", ".", " world"
    request = GenerationRequest("a", 10, stop=("Paris.",))
    text, chunks = _joined(engine, [request])[0]
    assert text == "Hello"
    assert all("Paris" not in c.text for c in chunks)
    assert (chunks[-1].finish_reason, chunks[-1].completion_tokens) == ("stop", 3)


def test_held_back_prefix_is_flushed_when_no_stop_follows(scripted_engine: Any) -> None:
    engine = scripted_engine({"a": [19556, 38634, 905]})  # "Hello", "Paris", " world"
    text, _ = _joined(engine, [GenerationRequest("a", 3, stop=("Paris.",))])[0]
    assert text == "HelloParis world"
