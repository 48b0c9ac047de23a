"""What a demo workload is: an application's requests, the right answer of each, and its targets.

A workload stands for one tenant's application sending one narrow kind of request through the
gateway. It knows, for each request it sends, the right answer (from a package's benchmark data
or computed by the generator that wrote the request: never hand-written), so the demo can measure
both models against truth, independently of the judge. Some of its users send feedback: for a
share of requests (chosen by a hash of the request id, so a run is reproducible) the workload
confirms a right answer with ``score=1`` or sends the right one as a ``correction``, as a person
reviewing answers would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from cumulus.v1 import common_pb2, gateway_pb2

Outcome = Literal["promoted", "held"]
Target = tuple[Literal[">=", "<="], float]


@dataclass(frozen=True)
class TextItem:
    """A request of a generated workload: the user's message and the right answer to it."""

    id: str
    user: str
    gold: str
    """The right answer as the application expects it (a label, a JSON object, a number)."""


class Workload:
    """One application's traffic; subclasses give the items, the request and the gold check."""

    name: ClassVar[str]
    summary: ClassVar[str]
    system_prompt: ClassVar[str] = ""
    max_tokens: ClassVar[int] = 64
    feedback_share: ClassVar[float] = 0.0
    """Share of requests whose answer a user reviews: confirmed when right, corrected when wrong."""
    expected: ClassVar[Outcome] = "promoted"
    """``promoted``: the loop should ship a candidate; ``held``: nothing should pass shadow."""
    broken_adapter_stage: ClassVar[bool] = False
    """Also push a random-weights adapter past the offline gate, to be rolled back."""
    targets: ClassVar[Mapping[str, Target]] = {}
    """Report key -> (comparison, threshold): the workload's headline targets."""

    def items(self, capture: int, held_out: int) -> tuple[list[Any], list[Any]]:
        """``capture`` requests for training traffic, then ``held_out`` others for the rollout."""
        raise NotImplementedError

    def correct(self, item: Any, text: str) -> bool:
        """Whether ``text`` is a right answer to ``item`` (the demo's gold, not the judge's)."""
        raise NotImplementedError

    def correction(self, item: Any) -> str:
        """The right answer a reviewing user sends back for ``item``."""
        return str(item.gold)

    def request(self, item: Any, request_id: str) -> gateway_pb2.GenerateRequest:
        """The gateway request of ``item`` (no ``workflow``: the gateway derives it)."""
        return gateway_pb2.GenerateRequest(
            request_id=request_id,
            messages=[
                common_pb2.ChatMessage(role="system", content=self.system_prompt),
                common_pb2.ChatMessage(role="user", content=item.user),
            ],
            params=common_pb2.GenerationParams(max_tokens=self.max_tokens, temperature=0.0),
            session_key=request_id,
        )

    def feedback(self, item: Any, request_id: str, answer: str) -> gateway_pb2.FeedbackRequest | None:
        """The feedback a user sends on this answer, or None (most answers get none)."""
        if not reviewed(request_id, self.feedback_share):
            return None
        if self.correct(item, answer):
            return gateway_pb2.FeedbackRequest(request_id=request_id, score=1.0)
        return gateway_pb2.FeedbackRequest(request_id=request_id, correction=self.correction(item))


def reviewed(request_id: str, share: float) -> bool:
    """Whether a user reviews this request: a fixed share of ids, by hash (reproducible)."""
    if share <= 0:
        return False
    bucket = int(hashlib.sha256(request_id.encode()).hexdigest()[:8], 16) / 2**32
    return bucket < share


def distinct_items(prefix: str, count: int, draw: Callable[[int], tuple[str, str]]) -> list[TextItem]:
    """``count`` items with distinct messages: ``draw(n)`` gives the n-th try's (message, gold)
    and is called again whenever a message was already asked."""
    out: list[TextItem] = []
    asked: set[str] = set()
    while len(out) < count:
        text, gold = draw(len(out))
        if text not in asked:
            asked.add(text)
            out.append(TextItem(f"{prefix}-{len(out):04d}", text, gold))
    return out
