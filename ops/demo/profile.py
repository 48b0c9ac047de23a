"""How big the demo is, and the service settings it runs the stack with.

The stack's defaults are production-shaped (a workflow needs 200 requests a day to be nominated,
each rollout step 100 verdicts at a 10% margin). The demo has a few hundred requests and 2 CPU
cores, so when it starts the stack itself it starts it with the overrides below, passed to every
service as ``CUMULUS_<SECTION>__<FIELD>`` variables; every number is printed in the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cumulus.models.catalog import GEMMA3, SMOLLM2

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_RECIPE = REPO_ROOT / "services" / "trainer" / "configs" / "demo.yaml"


@dataclass(frozen=True)
class DemoProfile:
    name: str
    capture_requests: int
    """Requests replayed before detection (the training traffic)."""
    held_out: int
    """Distinct requests kept for the rollout (asked again in turn if the rollout needs more)."""
    concurrency: int
    """Requests in flight at once (the live model batches them)."""
    canary_steps: tuple[float, ...]
    min_samples_per_step: int
    margin: float
    phase_timeout_s: float
    """Longest any one stage may take before the demo gives up and reports where it stopped."""

    def service_env(self) -> dict[str, str]:
        """The stack settings of this profile, as the environment variables the services read."""
        return {
            # Detection: check often, and a workflow the size of the demo's capture qualifies.
            "CUMULUS_COLLECTOR__DETECTION__INTERVAL_S": "5",
            "CUMULUS_COLLECTOR__DETECTION__MIN_REQUESTS": str(self.capture_requests),
            "CUMULUS_COLLECTOR__DETECTION__MIN_DAILY_SAVINGS": "0",
            "CUMULUS_COLLECTOR__EXPORT__HOLDOUT_FRACTION": "0.12",
            # Drift (`--drift`): a check every 10 s instead of every minute.
            "CUMULUS_COLLECTOR__DRIFT__INTERVAL_S": "10",
            # Training and the offline gate: the short recipe, a small holdout answered.
            "CUMULUS_TRAINER__RECIPE": str(DEMO_RECIPE),
            # Two rungs under the 4x cost bound against live Qwen2.5-Coder-0.5B once prompts are
            # pruned: SmolLM2-135M first, Gemma 3 270M where SmolLM2's curve plateaus.
            "CUMULUS_TRAINER__STUDENTS": json.dumps([{"model": SMOLLM2}, {"model": GEMMA3}]),
            "CUMULUS_TRAINER__GATE_THRESHOLD": "0.6",
            "CUMULUS_TRAINER__GATE_MAX_EXAMPLES": "24",
            # Gold decides where a dozen reviewed rows (a step: 15 gold verdicts) are in.
            "CUMULUS_TRAINER__GATE_MIN_GOLD_ROWS": "10",
            "CUMULUS_ROUTER__MIN_GOLD_SAMPLES_PER_STEP": "15",
            # The agreement margin is lenient for speed; lost accuracy on gold is not forgiven.
            "CUMULUS_ROUTER__GOLD_MARGIN": "0.1",
            "CUMULUS_TRAINER__GATE_MAX_NEW_TOKENS": "128",
            # Rollout: every request shadowed; fewer, smaller steps than production.
            "CUMULUS_ROUTER__SHADOW_RATE": "1.0",
            "CUMULUS_ROUTER__CANARY_STEPS": "[" + ",".join(str(s) for s in self.canary_steps) + "]",
            "CUMULUS_ROUTER__MIN_SAMPLES_PER_STEP": str(self.min_samples_per_step),
            "CUMULUS_ROUTER__MARGIN": str(self.margin),
            "CUMULUS_ROUTER__GUARDRAIL_MIN_SAMPLES": "10",
            "CUMULUS_GATEWAY__SHADOW_CONCURRENCY": str(self.concurrency),
            # Bigger batches: on CPU a decode step of 16 costs little more than one of 8.
            "CUMULUS_TRITON__MAX_BATCH_SIZE": str(self.concurrency),
        }

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "service_env": self.service_env()}


PROFILES = {
    "quick": DemoProfile(
        name="quick",
        capture_requests=200,
        held_out=150,
        concurrency=16,
        canary_steps=(0.1, 0.5),
        min_samples_per_step=20,
        margin=0.25,
        # A guard, not a target: bfcl's quick training alone takes ~520 s on a 2-core AMD EPYC.
        phase_timeout_s=1200,
    ),
    "full": DemoProfile(
        name="full",
        capture_requests=400,
        held_out=300,
        concurrency=16,
        canary_steps=(0.01, 0.05, 0.25, 0.5),
        min_samples_per_step=50,
        margin=0.1,
        phase_timeout_s=1800,
    ),
}
