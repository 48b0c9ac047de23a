"""Injected stand-ins for the two model-backed parts: the embedder and the LLM judge."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence


class WordEmbedder:
    """Bag-of-words unit vectors over a fixed vocabulary: cosine = word overlap, no model needed."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        vocabulary = sorted({w for t in texts for w in t.lower().split()}) or ["_"]
        vectors = []
        for text in texts:
            counts = [float(text.lower().split().count(w)) for w in vocabulary]
            norm = sum(c * c for c in counts) ** 0.5 or 1.0
            vectors.append([c / norm for c in counts])
        return vectors


class ScriptedJudge:
    """A JudgeModel answering from a script: ``answer(first_response, second_response) -> reply``."""

    def __init__(self, answer: Callable[[str, str], str]) -> None:
        self.answer = answer
        self.questions: list[str] = []

    async def ask(self, messages: Sequence[Mapping[str, str]]) -> str:
        question = messages[-1]["content"]
        self.questions.append(question)
        first = question.split("[Response A]\n", 1)[1].split("\n\n[Response B]", 1)[0]
        second = question.split("[Response B]\n", 1)[1].split("\n\nWhich response", 1)[0]
        return self.answer(first, second)
