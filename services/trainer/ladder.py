"""The ladder of students: which base model a workflow's next adapter is trained on, if any.

``trainer.students`` lists base models smallest first. For each candidate the trainer walks the
list and trains on the first student that

1. is cheap enough: its estimated cost per request is at least ``trainer.min_cost_ratio`` times
   under the live model's, and
2. has not plateaued on this workflow: of its earlier attempts (this trainer's registry, per
   tenant and workflow), the last one, trained on more data, beat the best before it by at least
   ``trainer.plateau_min_gain`` at the offline gate, or passed it, or there were fewer than two.

None qualifies: the candidate is rejected untrained, with a reason that names the students and
what stopped each one, so an operator knows whether data or a larger student would help.

Cost per request is per-token cost x tokens. A token's cost is ``cost_per_token`` where given,
else its compute, 2 x the parameters that do arithmetic (cumulus.models.params). Tokens come
from the candidate's own dataset: the live model reads every prompt whole, a student the prompt
its recipe prunes (``data.prune``), and both write the same answer. Characters stand in for
tokens; the two tokenizers may differ by some percent, the report's ratio is measured.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cumulus.config import CumulusConfig
from cumulus.errors import ConfigError, NotFound
from cumulus.lora.registry import AdapterRecord, AdapterRegistry
from cumulus.models.catalog import get_spec
from cumulus.models.params import model_parameters
from cumulus.prompts import PRUNABLE
from services.trainer.recipe_config import load_recipe_config

_SAMPLE = 200
"""Dataset lines read to estimate prompt and answer lengths."""


@dataclass(frozen=True)
class Tried:
    """One earlier adapter of the workflow at the offline gate: a point of its learning curve."""

    model: str
    examples: int
    score: float
    """Gold accuracy where the gate decided on gold, else agreement with live."""
    passed: bool


@dataclass(frozen=True)
class Choice:
    """The student to train on (None: none qualifies) and why."""

    model: str | None
    reason: str
    cost_ratios: dict[str, float] = field(default_factory=dict)


def plateaued(tried: Sequence[Tried], min_gain: float) -> bool:
    """Whether a student's curve (its attempts, oldest first) stopped rising below the gate."""
    if len(tried) < 2 or tried[-1].passed:
        return False
    return tried[-1].score - max(t.score for t in tried[:-1]) < min_gain


def choose(
    ladder: Sequence[str],
    cost_ratios: Mapping[str, float],
    tried: Sequence[Tried],
    *,
    min_cost_ratio: float,
    min_gain: float,
) -> Choice:
    """The first student of ``ladder`` cheap enough and not plateaued (see the module docstring)."""
    why: list[str] = []
    for model in ladder:
        ratio = cost_ratios[model]
        if ratio < min_cost_ratio:
            why.append(f"{model} costs 1/{ratio:.1f} of live, over the 1/{min_cost_ratio:g} bound")
            continue
        curve = [t for t in tried if t.model == model]
        if plateaued(curve, min_gain):
            points = ", ".join(f"{t.score:.2f} on {t.examples}" for t in curve)
            why.append(f"{model} plateaued below the gate ({points} examples)")
            continue
        reason = f"{model}: cost 1/{ratio:.1f} of live" + (f"; {'; '.join(why)}" if why else "")
        return Choice(model, reason, dict(cost_ratios))
    advice = (
        "more (or corrected) data will not help the students tried; add a larger student to "
        "trainer.students within trainer.min_cost_ratio"
        if tried
        else "add a smaller student to trainer.students, or prune the prompt (data.prune)"
    )
    return Choice(None, f"no student to train: {'; '.join(why)}; {advice}", dict(cost_ratios))


def history(records: Iterable[AdapterRecord], tenant: str, workflow: str) -> list[Tried]:
    """The workflow's adapters that reached the offline gate, oldest first."""
    tried = []
    for record in records:
        if record.workflow != workflow or record.field("tenant", "") != tenant:
            continue
        if record.field("status") not in ("ready", "rejected"):
            continue
        if record.field("forced_past_gate", False):
            continue  # never gated (the demo's deliberately broken adapter): says nothing of the student
        # The gate recorded its own score: gold accuracy where it decided on gold, else agreement.
        gate = record.field("offline_gate") or {}
        tried.append(
            Tried(
                model=str(record.field("base_model", "")),
                examples=int((record.field("data") or {}).get("examples", 0)),
                score=float(gate.get("score") or 0.0),
                passed=bool(gate.get("passed", False)),
            )
        )
    return tried


def token_share(records: Iterable[dict[str, Any]], prune: Sequence[str]) -> float:
    """A pruned request's length over the whole request's (prompt and answer), in characters."""
    whole = kept = 0
    for record in records:
        messages = list(record.get("messages") or [])
        tools = len(json.dumps(record.get("tools") or []))
        texts = [(m.get("role"), len(str(m.get("content") or ""))) for m in messages]
        size = sum(n for _, n in texts) + tools
        dropped = sum(n for role, n in texts if role == "system") if "system" in prune else 0
        whole += size
        kept += size - dropped - (tools if "tools" in prune else 0)
    assert set(prune) <= set(PRUNABLE), prune
    return kept / whole if whole else 1.0


def sample(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The first dataset lines, parsed, for the length estimate."""
    records = []
    for line in lines:
        if line.strip():
            records.append(json.loads(line))
        if len(records) >= _SAMPLE:
            break
    return records


class StudentPicker:
    """``choose`` over this trainer's config, registry and the candidate's dataset."""

    def __init__(self, config: CumulusConfig) -> None:
        for student in config.ladder:  # a typo fails the start, never a candidate
            try:
                get_spec(student.model)
            except NotFound as exc:
                raise ConfigError(
                    f"trainer.students: unknown model id {student.model!r}", fix=exc.fix
                ) from exc
        self.config = config
        self.registry = AdapterRegistry(config.artifacts_dir)
        self._compute: dict[str, int] = {}

    def pick(self, tenant: str, workflow: str, dataset_dir: Path, named: str) -> Choice:
        """The student for a candidate whose event names base ``named`` (the collector names the
        first rung; a base outside the ladder is the operator's choice, and the only one tried)."""
        config, trainer = self.config, self.config.trainer
        ladder = [s.model for s in config.ladder]
        if named and named not in ladder:
            ladder = [named]
        prune = load_recipe_config(trainer.recipe).data.prune
        try:
            with (dataset_dir / "train.jsonl").open(encoding="utf-8") as lines:
                share = token_share(sample(lines), prune)
        except (OSError, ValueError):  # the job fails on it with the reason; no estimate to make
            share = 1.0
        given = {s.model: s.cost_per_token for s in config.ladder}
        live = trainer.live_cost_per_token or self._per_token(config.triton.live_model)
        ratios = {m: live / ((given.get(m) or self._per_token(m)) * share) for m in ladder}
        tried = history(self.registry.records(), tenant, workflow)
        return choose(
            ladder, ratios, tried, min_cost_ratio=trainer.min_cost_ratio, min_gain=trainer.plateau_min_gain
        )

    def _per_token(self, model_id: str) -> float:
        """Forward-pass compute per token: 2 x parameters that do arithmetic."""
        if model_id not in self._compute:
            self._compute[model_id] = model_parameters(model_id, self.config.models_dir)
        return 2.0 * self._compute[model_id]
