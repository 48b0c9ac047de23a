"""``pairwise``: an LLM judge compares live and candidate, asked twice with the order swapped.

LLM judges favour whichever answer they read first (or second); asking in both orders and
counting a win only when it holds both ways cancels that bias: candidate better both times =
win (1.0), live better both times = loss (0.0), anything else = tie (0.5). A tie passes: the
question in shadow is whether the candidate is no worse than live. Whether the two answers
agreed is kept (``consistent``) for ``cumulus judge calibrate``'s position-consistency figure.

The model call is behind ``JudgeModel`` so tests script it; production uses
:class:`services.judge.triton_judge.TritonJudgeModel`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from cumulus.graders.base import Grade, GradeCase

SYSTEM_PROMPT = (
    "You are an impartial judge. Two assistant responses answer the same conversation. "
    "Decide which response is better: more correct, more helpful, following the instructions. "
    "Reply with one letter only: A if response A is better, B if response B is better, "
    "T if they are equally good."
)
_MAX_RESPONSE_CHARS = 4000
_MAX_CONVERSATION_CHARS = 6000
_VERDICT = re.compile(r"\b(A|B|T|TIE)\b")
SCORES = {"candidate": 1.0, "tie": 0.5, "live": 0.0}


class JudgeModel(Protocol):
    """Answers a chat (role/content dicts) with text; the judge asks it one question per order."""

    async def ask(self, messages: Sequence[Mapping[str, str]]) -> str: ...


def judge_messages(case: GradeCase, first: str, second: str) -> list[dict[str, str]]:
    """The question for one order: the conversation, then response A and response B."""
    conversation = "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in case.messages)
    question = (
        f"[Conversation]\n{conversation[-_MAX_CONVERSATION_CHARS:]}\n\n"
        f"[Response A]\n{first[:_MAX_RESPONSE_CHARS]}\n\n"
        f"[Response B]\n{second[:_MAX_RESPONSE_CHARS]}\n\n"
        "Which response is better? Reply A, B or T."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def parse_choice(answer: str) -> str | None:
    """``A``, ``B`` or ``T`` from the judge's reply (first one it names), None when it names none."""
    match = _VERDICT.search(answer.strip().upper())
    if match is None:
        return None
    return "T" if match.group(1) == "TIE" else match.group(1)


def combine(live_first: str | None, candidate_first: str | None) -> tuple[str, bool]:
    """The outcome (``candidate``, ``live`` or ``tie``) of the two orders, and whether they agreed.

    ``live_first`` is the choice when live was response A; ``candidate_first`` when the
    candidate was. An unreadable reply is a tie and never consistent.
    """
    first = {"A": "live", "B": "candidate", "T": "tie"}.get(live_first or "")
    second = {"A": "candidate", "B": "live", "T": "tie"}.get(candidate_first or "")
    consistent = first is not None and first == second
    if consistent and first in ("candidate", "live"):
        return str(first), True
    return "tie", consistent


class PairwiseGrader:
    """Asks ``model`` in both orders, ``concurrency`` cases at a time (see the module docstring)."""

    name = "pairwise"

    def __init__(self, model: JudgeModel, concurrency: int = 4) -> None:
        self.model = model
        self._slots = asyncio.Semaphore(concurrency)

    async def grade(self, case: GradeCase) -> Grade:
        async with self._slots:
            live_first, candidate_first = await asyncio.gather(
                self.model.ask(judge_messages(case, case.live, case.candidate)),
                self.model.ask(judge_messages(case, case.candidate, case.live)),
            )
        choices = parse_choice(live_first), parse_choice(candidate_first)
        outcome, consistent = combine(*choices)
        details = {
            "outcome": outcome,
            "consistent": consistent,
            "live_first": choices[0] or live_first[:40],
            "candidate_first": choices[1] or candidate_first[:40],
        }
        score = SCORES[outcome]
        return Grade(self.name, score, score >= SCORES["tie"], details)

    async def grade_batch(self, cases: Sequence[GradeCase]) -> list[Grade]:
        return list(await asyncio.gather(*(self.grade(case) for case in cases)))
