"""The drift signals of one promoted workflow, measured against its adapter's training data.

Pure functions over plain rows, so each rule is unit-tested without storage. A ``Profile`` is what
the training dataset (train and holdout lines, PII-scrubbed as exported) says the workflow looks
like; ``measure`` compares a window of traffic since the promotion with it:

- **new_tools**: share of requests offering a tool name the training data never had;
- **template**: share of requests whose system prompt (digits and whitespace folded) it never had;
- **prompt_length**: |log2| of the median prompt length over the training data's;
- **output_shape**: drop in the share of the adapter's answers with the training answers'
  dominant shape (tool_call, json, label or semantic: what the judge would grade them as);
- **feedback**: rise in the share of wrong answers by feedback (negative, or corrected to
  something else) on the adapter's answers over live's answers before the promotion.

The two novelty shares are measured over the *holdout's* novelty against train (the hash split
puts unseen prompts there in the same proportion), so a workflow whose system prompt always
varies (a date, a user's name) is not drift; only novelty beyond that is.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cumulus.config import DriftConfig, Thresholds
from cumulus.graders.base import GradeCase, ToolSchema
from cumulus.graders.selector import detect_grader
from cumulus.privacy.redactor import Redactor, untagged

_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_OLD_PLACEHOLDER = re.compile(r"\[(EMAIL|PHONE|CARD|IBAN|IP)\]")
_ANY_KEY = Redactor(secrets.token_bytes(32))
"""Only to find what a raw row holds: its tags are dropped at once, so no key need be shared."""
_LISTED = 5


@dataclass(frozen=True)
class Prompt:
    """What drift reads of one request: its tools, system prompt and prompt length."""

    tools: frozenset[str]
    system: str
    chars: int

    @classmethod
    def of(cls, messages: Sequence[Mapping[str, Any]], tool_names: Iterable[str]) -> Prompt:
        system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
        chars = sum(len(str(m.get("content", ""))) for m in messages if m.get("role") != "system")
        return cls(frozenset(tool_names), system_key(system), chars)


def system_key(text: str) -> str:
    """A system prompt with personal data as placeholders without tags, digits and whitespace
    folded: the same for a raw row, a row stored redacted (each request's placeholders have tags
    of their own) and a dataset exported before placeholders had tags (``[EMAIL]``)."""
    folded = _OLD_PLACEHOLDER.sub(r"<\1>", untagged(_ANY_KEY.redact(text)))
    return _SPACE.sub(" ", _DIGITS.sub("0", folded)).strip().casefold()


def answer_shape(answer: str, tools: Iterable[str]) -> str:
    """tool_call, json, label or semantic: the grader the judge would pick for this answer."""
    case = GradeCase(live=answer, candidate="", tools=[ToolSchema(name) for name in tools])
    try:
        return detect_grader(case)
    except RecursionError:
        return "semantic"


@dataclass
class Profile:
    """What a training dataset says its workflow looks like."""

    dataset_id: str
    tools: frozenset[str]
    systems: frozenset[str]
    median_chars: float
    shapes: Counter[str]
    holdout_new_tools: float = 0.0
    holdout_new_system: float = 0.0

    @property
    def dominant_shape(self) -> tuple[str, float]:
        total = sum(self.shapes.values())
        shape, n = self.shapes.most_common(1)[0] if total else ("semantic", 0)
        return shape, (n / total if total else 0.0)


def _line_prompt(line: Mapping[str, Any]) -> tuple[Prompt, str]:
    messages = list(line.get("messages") or [])
    answer = str(messages[-1].get("content", "")) if messages else ""
    tools = [str((t.get("function") or t).get("name", "")) for t in line.get("tools") or []]
    return Prompt.of(messages[:-1], tools), answer


def profile_of(
    dataset_id: str, train: Iterable[Mapping[str, Any]], holdout: Iterable[Mapping[str, Any]]
) -> Profile:
    """The profile of a dataset's lines (train.jsonl and holdout.jsonl, parsed)."""
    trained = [_line_prompt(line) for line in train]
    held = [_line_prompt(line) for line in holdout]
    tools = frozenset(name for prompt, _ in trained for name in prompt.tools)
    systems = frozenset(prompt.system for prompt, _ in trained)
    shapes = Counter(answer_shape(answer, prompt.tools) for prompt, answer in trained + held)
    lengths = [prompt.chars for prompt, _ in trained + held]
    return Profile(
        dataset_id=dataset_id,
        tools=tools,
        systems=systems,
        median_chars=float(statistics.median(lengths)) if lengths else 0.0,
        shapes=shapes,
        holdout_new_tools=_share(held, lambda p: bool(p.tools - tools)),
        holdout_new_system=_share(held, lambda p: p.system not in systems),
    )


def _share(items: Sequence[tuple[Prompt, str]], test: Any) -> float:
    return sum(1 for prompt, _ in items if test(prompt)) / len(items) if items else 0.0


@dataclass(frozen=True)
class Served:
    """One request of the window: its prompt, and its answer where the promoted adapter gave it."""

    prompt: Prompt
    answer: str | None = None

    @classmethod
    def from_row(cls, messages_json: str, tools_json: str, answer: str | None) -> Served | None:
        try:
            messages = json.loads(messages_json or "[]")
            tools = json.loads(tools_json) if tools_json else []
        except json.JSONDecodeError:
            return None
        names = [str(t.get("name", "")) for t in tools if isinstance(t, dict)]
        return cls(Prompt.of([m for m in messages if isinstance(m, dict)], names), answer)


@dataclass(frozen=True)
class WrongShare:
    """Feedback notes that judged answers, and how many said the answer was wrong."""

    notes: int
    wrong: int

    @property
    def share(self) -> float:
        return self.wrong / self.notes if self.notes else 0.0


@dataclass
class Signal:
    """One measured signal: its name, the measure, the severity it reaches, and why in words."""

    signal: str
    value: float
    severity: int
    detail: str
    evidence: dict[str, float] = field(default_factory=dict)


def measure(
    profile: Profile,
    window: Sequence[Served],
    feedback: tuple[WrongShare, WrongShare],
    cfg: DriftConfig,
) -> list[Signal]:
    """Every signal measurable on ``window`` (``feedback``: the adapter's answers, live's before)."""
    signals: list[Signal] = []
    n = len(window)
    if n >= cfg.min_requests:
        unseen = Counter(name for s in window for name in s.prompt.tools - profile.tools)
        new_tools = sum(1 for s in window if s.prompt.tools - profile.tools) / n
        names = ", ".join(name for name, _ in unseen.most_common(_LISTED))
        signals.append(
            _signal(
                "new_tools",
                new_tools - profile.holdout_new_tools,
                cfg.new_tools,
                f"{new_tools:.0%} of {n} requests offer tools never trained on ({names or 'none'})",
                {"share": new_tools, "baseline": profile.holdout_new_tools, "requests": n},
            )
        )
        new_system = sum(1 for s in window if s.prompt.system not in profile.systems) / n
        signals.append(
            _signal(
                "template",
                new_system - profile.holdout_new_system,
                cfg.template,
                f"{new_system:.0%} of {n} requests have a system prompt never trained on "
                f"(holdout: {profile.holdout_new_system:.0%})",
                {"share": new_system, "baseline": profile.holdout_new_system, "requests": n},
            )
        )
        median = float(statistics.median(s.prompt.chars for s in window))
        ratio = (median + 1.0) / (profile.median_chars + 1.0)
        signals.append(
            _signal(
                "prompt_length",
                abs(math.log2(ratio)),
                cfg.prompt_length,
                f"median prompt {median:.0f} chars vs {profile.median_chars:.0f} trained on (x{ratio:.2f})",
                {"median_chars": median, "trained_median_chars": profile.median_chars, "ratio": ratio},
            )
        )
    answered = [s for s in window if s.answer is not None]
    if len(answered) >= cfg.min_requests and profile.shapes:
        shape, trained_share = profile.dominant_shape
        share = sum(1 for s in answered if answer_shape(s.answer or "", s.prompt.tools) == shape) / len(
            answered
        )
        signals.append(
            _signal(
                "output_shape",
                trained_share - share,
                cfg.output_shape,
                f"{share:.0%} of {len(answered)} adapter answers are {shape} "
                f"(trained on {trained_share:.0%})",
                {"share": share, "trained_share": trained_share, "answers": len(answered)},
            )
        )
    adapter, live = feedback
    if adapter.notes >= cfg.min_feedback and live.notes >= cfg.min_feedback:
        signals.append(
            _signal(
                "feedback",
                adapter.share - live.share,
                cfg.feedback,
                f"feedback calls {adapter.share:.0%} of {adapter.notes} adapter answers wrong "
                f"(live before promotion: {live.share:.0%} of {live.notes})",
                {"wrong_share": adapter.share, "live_wrong_share": live.share, "notes": adapter.notes},
            )
        )
    return signals


def _signal(name: str, value: float, bounds: Thresholds, detail: str, evidence: dict[str, float]) -> Signal:
    value = round(value, 4)
    evidence = {k: round(float(v), 4) for k, v in evidence.items()} | {"value": value}
    return Signal(name, value, bounds.severity(value), detail, evidence)
