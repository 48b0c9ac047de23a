"""The demo's report: what the loop did, measured against the workload's own right answers.

Everything is computed from the events the demo observed (ops.demo.observer) and the requests it
sent; the workload's gold check (BFCL's AST checker, or the generator's answer) is the standard,
independent of the judge:

- ``gold_accuracy``: share of held-out requests answered right, by the live model and by the
  candidate, over the same shadow pairs (both answered every one), each with a 95% Wilson
  interval; ``gold_accuracy_ratio`` candidate / live and ``gold_accuracy_gain`` candidate - live;
- ``grader_vs_gold_agreement``: over pairs whose live answer is right (so "agrees with live"
  should mean "right"), how often the judge's verdict equals the gold check on the candidate;
- ``cost_ratio``: forward-pass compute per request, live / candidate: 2 x parameters x tokens
  (prompt + completion, as each model's tokenizer counted them). The parameters are those that do
  arithmetic (ops.demo.params): an input embedding table is a lookup and counts only where it is
  also the output projection (tied); the candidate's LoRA parameters count on top of its base;
- ``max_candidate_share``: the largest traffic share any of the workload's adapters reached.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cumulus.artifacts import write_json_atomically
from cumulus.config.drift import severity_name
from cumulus.v1 import common_pb2, events_pb2
from ops.demo.observer import Seen

Correct = Callable[[Any, str], bool]


def pair_stats(
    seen: Seen,
    adapter_id: str,
    items: Mapping[str, Any],
    params: Mapping[str, float],
    correct: Correct,
) -> dict[str, Any]:
    """Gold accuracy, judge agreement with gold, cost and latency over one adapter's shadow pairs."""
    pairs = [p for p in seen.pairs.values() if p.adapter_id == adapter_id and p.request_id in items]
    graded = [p for p in pairs if p.pair_id in seen.verdicts]
    live_ok = cand_ok = checked = agree = 0
    once: set[str] = set()
    for pair in graded:
        item = items[pair.request_id]
        if item.id in once:
            continue  # a request asked twice counts once
        once.add(item.id)
        live_right = correct(item, pair.live.text)
        cand_right = correct(item, pair.candidate.text)
        live_ok += live_right
        cand_ok += cand_right
        if live_right:
            checked += 1
            agree += seen.verdicts[pair.pair_id].passed == cand_right
    n = len(once)
    live_cost = [_flops(p.live, params) for p in graded if p.live.usage.completion_tokens]
    cand_cost = [_flops(p.candidate, params) for p in graded if p.candidate.usage.completion_tokens]
    live_ms = [p.live.latency_ms for p in graded if p.live.latency_ms > 0]
    cand_ms = [p.candidate.latency_ms for p in graded if p.candidate.latency_ms > 0]
    gold = {
        "live": _ratio(live_ok, n),
        "candidate": _ratio(cand_ok, n),
        "questions": n,
        "live_interval": wilson(live_ok, n),
        "candidate_interval": wilson(cand_ok, n),
    }
    return {
        "gold_accuracy": gold,
        "gold_accuracy_ratio": _ratio(cand_ok, live_ok),
        "gold_accuracy_gain": round((cand_ok - live_ok) / n, 4) if n else None,
        "grader_vs_gold_agreement": _ratio(agree, checked),
        "grader_vs_gold_checked": checked,
        "cost_ratio": _ratio(statistics.fmean(live_cost), statistics.fmean(cand_cost))
        if live_cost and cand_cost
        else None,
        "latency_ratio": _ratio(statistics.median(live_ms), statistics.median(cand_ms))
        if live_ms and cand_ms
        else None,
    }


def wilson(successes: int, n: int, z: float = 1.96) -> list[float] | None:
    """The 95% Wilson score interval of a proportion (sound at 0, 1 and small n), or None at n=0."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _flops(output: events_pb2.ShadowOutput, params: Mapping[str, float]) -> float:
    target = output.route.target
    n = params.get(target.model, 0.0) + (params.get("lora", 0.0) if target.adapter_id else 0.0)
    return 2.0 * n * (output.usage.prompt_tokens + output.usage.completion_tokens)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def rollout_steps(seen: Seen, adapter_id: str, t0: float) -> list[dict[str, Any]]:
    """Every transition of one adapter's rollout: when, to what, and the numbers behind it."""
    return [
        {
            "at_s": round(t - t0, 1),
            "from": e.from_state,
            "to": e.to_state,
            "weight": e.weight,
            "reason": e.reason,
            # The gate's test (evidence "test": 1 gold, 0 agreement); operator commands have none.
            "test": {1.0: "gold", 0.0: "agreement"}.get(e.evidence.get("test", -1.0), ""),
            "evidence": {k: round(v, 4) for k, v in sorted(e.evidence.items())},
        }
        for t, e in seen.rollouts
        if e.adapter_id == adapter_id
    ]


def verdict_stats(seen: Seen, adapter_id: str) -> tuple[int, float | None]:
    verdicts = [v for v in seen.verdicts.values() if v.adapter_id == adapter_id]
    return len(verdicts), _ratio(sum(v.passed for v in verdicts), len(verdicts))


def audit_stats(seen: Seen, adapter_id: str) -> dict[str, Any]:
    """The verdicts on the promoted adapter's audit sample (its answers graded against live's)."""
    audited = [
        v
        for v in seen.verdicts.values()
        if v.adapter_id == adapter_id
        and v.pair_id in seen.pairs
        and seen.pairs[v.pair_id].candidate.route.mode == common_pb2.ROUTE_MODE_PROMOTED
    ]
    return {
        "audit_verdicts": len(audited),
        "audit_pass_rate": _ratio(sum(v.passed for v in audited), len(audited)),
    }


def drift_seen(seen: Seen, t0: float) -> list[dict[str, Any]]:
    """The drift signals announced about the workload's adapters, in order, with when (s after start)."""
    return [
        {
            "at_s": round(t - t0, 1),
            "adapter_id": signal.adapter_id,
            "signal": signal.signal,
            "severity": severity_name(signal.severity),
            "detail": signal.detail,
        }
        for t, signal in seen.drift
    ]


def targets_met(report: Mapping[str, Any], targets: Mapping[str, tuple[str, float]]) -> dict[str, bool]:
    """Each headline target of the workload, and the outcome it expects, met or not."""
    met: dict[str, bool] = {}
    for key, (op, threshold) in targets.items():
        value = report.get(key)
        # A target that cannot be computed (live got nothing right, no pairs) is missed, never met.
        met[key] = value is not None and (value <= threshold if op == "<=" else value >= threshold)
    if report.get("expected") == "held":
        met["held_with_reason"] = report.get("rollout_final_state") != "promoted" and bool(
            report.get("held_reason")
        )
    else:
        met["promoted"] = report.get("rollout_final_state") == "promoted"
    if "bad_adapter_final_state" in report:
        met["bad_adapter_rolled_back"] = report.get("bad_adapter_final_state") == "rolled_back"
    return met


ROWS = (
    ("workload", "workload"),
    ("workflow", "workflow"),
    ("adapter_id", "adapter"),
    ("student", "student (base model trained)"),
    ("learning_curve", "learning curve (examples: gate score)"),
    ("shadow_pairs_graded", "shadow pairs graded"),
    ("gold_verdicts", "gold verdicts (feedback joined)"),
    ("judge_pass_rate", "judge pass rate"),
    ("grader_vs_gold_agreement", "grader vs gold agreement"),
    ("gold_accuracy", "gold accuracy live / candidate"),
    ("gold_accuracy_ratio", "candidate / live accuracy"),
    ("gold_accuracy_gain", "candidate - live accuracy"),
    ("cost_ratio", "cost ratio live / candidate"),
    ("parameters", "parameters live / candidate base + LoRA"),
    ("latency_ratio", "latency ratio live / candidate"),
    ("detection_to_promotion_seconds", "detection -> 100% seconds"),
    ("rollout_final_state", "rollout final state"),
    ("audit_verdicts", "audit verdicts after promotion"),
    ("audit_pass_rate", "audit pass rate"),
    ("drift_signals", "drift signals seen"),
    ("max_candidate_share", "candidate max traffic share"),
    ("held_reason", "why nothing was shipped"),
    ("bad_adapter_final_state", "broken adapter final state"),
    ("bad_adapter_max_weight", "broken adapter max traffic share"),
    ("drift", "after the traffic changed (--drift)"),
    ("total_seconds", "demo wall time seconds"),
)


def table(report: Mapping[str, Any]) -> str:
    targets = report.get("targets", {})
    lines = []
    for key, label in ROWS:
        if key not in report or report[key] == "":
            continue
        value = _shown(key, report.get(key), report)
        if key in targets:
            op, threshold = targets[key]
            label = f"{label} ({op} {threshold:g})"
        lines.append(f"  {label:<44} {value if value is not None else '-'}")
    met = report.get("targets_met", {})
    missed = [k for k, v in met.items() if v is False]
    lines.append(f"  {'targets missed':<44} {', '.join(missed) if missed else 'none'}")
    return "\n".join(lines)


def _shown(key: str, value: Any, report: Mapping[str, Any]) -> Any:
    if key == "gold_accuracy" and isinstance(value, dict):
        live, cand = (_with_interval(value.get(k), value.get(f"{k}_interval")) for k in ("live", "candidate"))
        return f"{live} / {cand} over {value.get('questions')} requests"
    if key == "parameters" and isinstance(value, dict):
        live, small, lora = (_millions(value.get(k)) for k in ("live", "small", "lora"))
        return f"{live} / {small} + {lora}"
    if key == "learning_curve" and isinstance(value, list):
        return ", ".join(f"{p['examples']}: {p['score']:.2f} ({p['test']})" for p in value) or None
    if key == "drift_signals" and isinstance(value, list):
        return ", ".join(f"{d['signal']} {d['severity']} at {d['at_s']:g} s" for d in value) or "none"
    if key == "drift" and isinstance(value, dict):
        return _drift_line(value)
    if key == "rollout_final_state":
        steps = report.get("rollout_steps", [])
        tests = sorted({s.get("test") for s in steps if s.get("test")})
        decided = f", decided on {'/'.join(tests)}" if tests else ""
        return f"{value or 'never rolled out'} after {len(steps)} transitions{decided}"
    return value


def _drift_line(drift: Mapping[str, Any]) -> str:
    v2, accuracy = drift.get("v2", {}), drift.get("gold_accuracy", {})
    rolled = drift.get("rollback_seconds")
    parts = [
        f"rolled back after {rolled:g} s" if rolled is not None else "never rolled back",
        f"{drift.get('degraded_answers_served')} wrong of {drift.get('answers_by_promoted_adapter')} served",
        f"v2 {v2.get('final_state') or v2.get('status') or 'not trained'}",
        f"gold live {accuracy.get('live', {}).get('accuracy')} / v2 {accuracy.get('v2', {}).get('accuracy')}",
    ]
    return "; ".join(parts)


def _with_interval(value: Any, interval: Any) -> str:
    return f"{value} [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else str(value)


def _millions(count: float | None) -> str:
    return f"{count / 1e6:.2f}M" if count is not None else "-"


def write(report: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, report)
