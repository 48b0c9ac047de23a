"""The offline gate: the new adapter answers the holdout prompts, the judge's graders compare.

The adapter runs exactly as the `small` Triton model will serve it: the base model wrapped by
``MultiLora``, the adapter loaded from its TensorRT-LLM export, prompts rendered by the gateway's
renderer, greedy decoding by ``GenerationEngine``. So the gate also proves the export serves.
Each answer is graded against the live model's answer from the dataset by ``cumulus.graders``
(the library the judge uses, with the judge's per-workflow grader choices and thresholds).

Which test decides (``gate_test`` in the metrics: 1 gold, 0 agreement):
- **gold**, when at least ``min_gold_rows`` holdout rows are gold (feedback corrected live's
  answer or confirmed it; cumulus.graders.gold): the adapter and live's recorded answer are both
  graded against the gold; the offline score is the adapter's gold accuracy, and it passes when
  that is at least live's gold accuracy minus ``gold_margin``. An adapter that learned from the
  corrections may beat live here, where agreement with live would have rejected it;
- **agreement** otherwise: the offline score is the mean grade against live's answers; the
  adapter passes when it reaches ``threshold``.
Both are always reported, with the counts.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from cumulus.engine.adapter_cache import AdapterCache
from cumulus.engine.backend import GenerationEngine, GenerationRequest
from cumulus.engine.multilora import MultiLora
from cumulus.graders import GradeCase, GraderSettings, GraderSuite, ToolSchema
from cumulus.graders.gold import Gold, GoldCase, grade_against_gold
from cumulus.graders.semantic import Embedder
from cumulus.models import load_causal_lm
from services.trainer.data import HoldoutPrompt

GATE_TASK_ID = 1
_BATCH = 8


@dataclass(frozen=True)
class GateSettings:
    threshold: float
    max_examples: int
    max_new_tokens: int
    dtype: str = "bfloat16"
    """The serving dtype (triton.dtype)."""
    graders: GraderSettings = field(default_factory=GraderSettings)
    min_gold_rows: int = 20
    """Gold holdout rows from which gold decides instead of agreement with live."""
    gold_margin: float = 0.1
    """Gold: the adapter passes at live's gold accuracy minus this or above (the router's margin)."""


@dataclass(frozen=True)
class GateResult:
    score: float
    passed: bool
    threshold: float
    examples: int
    pass_rate: float
    graders: dict[str, int]
    samples: list[dict[str, Any]]
    """The first few (prompt tail, live, adapter, score) for a human reading the manifest."""
    agreement: float = 0.0
    """Mean grade of the adapter's answers against live's, over every row."""
    gold: dict[str, float] = field(default_factory=dict)
    """gold_rows, candidate_gold_accuracy, live_gold_accuracy, gate_test (1: gold decided)."""
    reason: str = ""
    """Why a rejected adapter failed, in numbers (empty when it passed)."""

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def run_gate(
    model_path: Path,
    weights: npt.NDArray[Any],
    config: npt.NDArray[Any],
    prompts: Sequence[HoldoutPrompt],
    *,
    workflow: str,
    settings: GateSettings,
    embedder: Embedder | None = None,
    progress: Callable[[float], None] = lambda _: None,
) -> GateResult:
    """Answer ``prompts`` with the adapter, grade against the live answers, decide."""
    prompts = list(prompts)[: settings.max_examples]
    if not prompts:
        return GateResult(
            0.0, False, settings.threshold, 0, 0.0, {}, [], gold={"gold_rows": 0.0, "gate_test": 0.0}
        )
    answers = generate_answers(model_path, weights, config, prompts, settings, progress)
    return score_answers(prompts, answers, workflow=workflow, settings=settings, embedder=embedder)


def score_answers(
    prompts: Sequence[HoldoutPrompt],
    answers: Sequence[str],
    *,
    workflow: str,
    settings: GateSettings,
    embedder: Embedder | None = None,
) -> GateResult:
    """Grade the adapter's ``answers`` to ``prompts`` (against gold or live) and decide."""
    suite = GraderSuite(settings.graders, embedder=embedder)
    cases = [
        GradeCase(live=p.live, candidate=a, workflow=workflow, tools=_tool_schemas(p.tools))
        for p, a in zip(prompts, answers, strict=True)
    ]
    grades = suite.grade_deterministic(cases)
    agreement = statistics.fmean(g.score for g in grades)
    gold = _gold_numbers(suite, prompts, answers, workflow)
    samples = [
        {
            "prompt_tail": p.prompt[-200:],
            "live": p.live[:500],
            "adapter": a[:500],
            "score": round(g.score, 3),
            **({"gold": p.gold[:500]} if p.gold is not None else {}),
        }
        for p, a, g in list(zip(prompts, answers, grades, strict=True))[:5]
    ]
    if gold["gold_rows"] >= settings.min_gold_rows:
        gold["gate_test"] = 1.0
        score, live = gold["candidate_gold_accuracy"], gold["live_gold_accuracy"]
        passed = score >= live - settings.gold_margin
        reason = (
            f"gold accuracy {score:.2f} on {gold['gold_rows']:.0f} gold holdout rows, under live's "
            f"{live:.2f} less the margin {settings.gold_margin:g}"
        )
    else:
        gold["gate_test"] = 0.0
        score, passed = agreement, agreement >= settings.threshold
        reason = (
            f"agreement with live {agreement:.2f} on {len(grades)} holdout rows, under the "
            f"threshold {settings.threshold:g} ({gold['gold_rows']:.0f} gold rows, "
            f"{settings.min_gold_rows} decide on gold)"
        )
    return GateResult(
        score=round(score, 4),
        passed=passed,
        threshold=settings.threshold,
        examples=len(grades),
        pass_rate=round(statistics.fmean(g.passed for g in grades), 4),
        graders=dict(Counter(g.grader for g in grades)),
        samples=samples,
        agreement=round(agreement, 4),
        gold=gold,
        reason="" if passed else reason,
    )


def _gold_numbers(
    suite: GraderSuite, prompts: Sequence[HoldoutPrompt], answers: Sequence[str], workflow: str
) -> dict[str, float]:
    """The adapter's and live's accuracy on the gold rows, both graded against the gold."""
    cases = [
        GoldCase(Gold("correction", p.gold), p.live, a, workflow, tools=tuple(_tool_schemas(p.tools)))
        for p, a in zip(prompts, answers, strict=True)
        if p.gold is not None
    ]
    graded = [g for g in grade_against_gold(suite, cases) if g is not None]
    n = len(graded)
    return {
        "gold_rows": float(n),
        "candidate_gold_accuracy": round(sum(g.candidate.passed for g in graded) / n, 4) if n else 0.0,
        "live_gold_accuracy": round(sum(g.live.passed for g in graded) / n, 4) if n else 0.0,
    }


def generate_answers(
    model_path: Path,
    weights: npt.NDArray[Any],
    config: npt.NDArray[Any],
    prompts: Sequence[HoldoutPrompt],
    settings: GateSettings,
    progress: Callable[[float], None] = lambda _: None,
) -> list[str]:
    """The adapter's greedy answer to each prompt, through the serving stack."""
    model, tokenizer = load_causal_lm(model_path, settings.dtype)
    cache = AdapterCache(MultiLora(model, slots=2), model_id="", registry=None, max_adapters=1)
    adapter = cache.resolve(GATE_TASK_ID, weights, config)
    engine = GenerationEngine(model, tokenizer, adapters=cache)
    answers: list[str] = []
    for start in range(0, len(prompts), _BATCH):
        chunk = prompts[start : start + _BATCH]
        requests = [
            # Room for the live answer's length and some more, never more than the cap.
            GenerationRequest(p.prompt, _max_tokens(engine, p.live, settings.max_new_tokens), adapter=adapter)
            for p in chunk
        ]
        answers.extend(c.text for c in engine.generate(requests))
        progress(len(answers) / len(prompts))
    return answers


def _max_tokens(engine: GenerationEngine, live: str, cap: int) -> int:
    return max(1, min(cap, engine.count_tokens(live) * 3 // 2 + 16))


def _tool_schemas(tools: Sequence[dict[str, Any]]) -> list[ToolSchema]:
    schemas = []
    for tool in tools:
        function = tool.get("function", tool)
        schemas.append(ToolSchema(str(function.get("name", "")), function.get("parameters") or {}))
    return schemas
