"""``python -m services.trainer.job SPEC.json``: one training job, run by the trainer in a child process.

Steps: verify the dataset against its manifest -> ``LoraRecipe`` setup and train -> save the PEFT
adapter -> TensorRT-LLM export -> offline gate -> register the adapter -> ``result.json``.

Talks to its parent through stdout, one JSON object per line (``{"event": "progress", ...}``);
logs go to stderr. Exit status 0: the outcome (READY, REJECTED or FAILED with the reason) is in
``<job_dir>/result.json``. Exit status 3: interrupted (SIGTERM, or ``--stop-after-steps``) after
saving a checkpoint; running the same spec again resumes from it. The child dies with its parent
(``PR_SET_PDEATHSIG``), and a lock on the job directory keeps two runs of one job apart.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cumulus.artifacts import (
    ArtifactStore,
    Manifest,
    manifest_sha256,
    read_jsonl,
    verify_dir,
    write_json_atomically,
)
from cumulus.errors import CumulusError
from cumulus.graders import GraderSettings
from cumulus.logs import configure_logging, get_logger
from cumulus.lora.registry import register_adapter, trtllm_export
from cumulus.models import ensure_model
from cumulus.prompts import RENDERER
from services.trainer import data
from services.trainer.offline_gate import GateSettings, run_gate
from services.trainer.recipe import LoraRecipe, TrainingInterrupted
from services.trainer.recipe_config import load_recipe_config

log = get_logger("trainer")
RESULT = "result.json"
EXIT_INTERRUPTED = 3
_TRAIN_SHARE, _GATE_SHARE = 0.85, 0.13
"""Shares of the job's progress: training, then the gate; registering is the rest."""


@dataclass(frozen=True)
class JobSpec:
    """Everything one job needs; the parent writes it as ``<job_dir>/spec.json``."""

    candidate_id: str
    adapter_id: str
    tenant: str
    workflow: str
    dataset_id: str
    dataset_dir: str
    base_model: str
    recipe: str
    artifacts_dir: str
    models_dir: str
    job_dir: str
    gate: dict[str, Any]
    """GateSettings fields, graders as GraderSettings fields."""
    student: dict[str, Any] = field(default_factory=dict)
    """Why this base model (ladder.Choice): ``reason`` and the estimated ``cost_ratios``."""
    init_adapter: str = ""
    """The PEFT folder of the version this one replaces, to start from (``trainer.warm_start``)."""
    parent_adapter_id: str = ""
    dataset_erasures: int = 0
    """Erasure records in the dataset's manifest when the job was specified (services/trainer/erasures.py)."""

    @classmethod
    def read(cls, path: Path) -> JobSpec:
        return cls(**json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))


def emit(event: str, **fields: Any) -> None:
    """One line to the parent; if it is gone, SIGTERM (PR_SET_PDEATHSIG) is on its way: say nothing."""
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps({"event": event, **fields}), flush=True)


def run_job(spec: JobSpec, stop_after_steps: int = 0) -> dict[str, Any]:
    """Run the job to an outcome (the dict written as result.json); TrainingInterrupted when stopped."""
    store = ArtifactStore(Path(spec.artifacts_dir))
    outcome = {
        k: getattr(spec, k) for k in ("adapter_id", "candidate_id", "workflow", "dataset_id", "base_model")
    }
    existing = store.path("adapters", spec.workflow, spec.adapter_id)
    if existing.is_dir():  # registered by an earlier run that did not get to report it
        return outcome | _outcome(verify_dir(existing), store)
    config = load_recipe_config(spec.recipe)
    dataset = Path(spec.dataset_dir)
    verify_dir(dataset)
    holdout = read_jsonl(dataset / "holdout.jsonl")
    model_path = ensure_model(spec.base_model, spec.models_dir)
    job_dir = Path(spec.job_dir)
    recipe = LoraRecipe(
        config,
        model_path=model_path,
        train_records=read_jsonl(dataset / "train.jsonl"),
        holdout_records=holdout,
        checkpoint_dir=job_dir / "checkpoint",
        progress=lambda p: emit("progress", **p, progress=p["fraction"] * _TRAIN_SHARE),
        should_stop=lambda: _STOP["requested"] or 0 < stop_after_steps <= recipe.state.step,
        init_adapter=Path(spec.init_adapter) if spec.init_adapter else None,
    )
    recipe.setup()
    try:
        state = recipe.train()
        peft_dir = job_dir / "adapter"
        recipe.save_adapter(peft_dir)
        prompts = data.holdout_prompts(holdout, recipe.tokenizer, config.data.prune)
        counts = dict(recipe.counts)
        device, amp = config.resolve()
    finally:
        recipe.cleanup()
    export = trtllm_export(peft_dir, config.lora.alpha, config.lora.use_rslora)
    gate_cfg = dict(spec.gate)
    settings = GateSettings(**{**gate_cfg, "graders": GraderSettings(**gate_cfg.get("graders", {}))})
    gate = run_gate(
        model_path,
        *export,
        prompts,
        workflow=spec.workflow,
        settings=settings,
        progress=lambda f: emit("progress", phase="gate", progress=_TRAIN_SHARE + f * _GATE_SHARE),
    )
    metrics = {
        "steps": state.step,
        **recipe.schedule.metrics(),
        "train_loss_first": state.losses[0],
        "train_loss_last": state.losses[-1],
        **({"holdout_loss_best": state.best_loss} if state.evals else {}),
        "early_stopped": float(state.early_stopped),
        "warm_start": float(recipe.warm_started),
        "train_tokens": state.tokens,
        "train_seconds": round(state.seconds, 3),
        "train_tokens_per_s": round(state.tokens / max(state.seconds, 1e-9), 1),
        "gate_pass_rate": gate.pass_rate,
        "gate_examples": gate.examples,
        "gate_agreement": gate.agreement,
        **gate.gold,
    }
    manifest = register_adapter(
        store,
        workflow=spec.workflow,
        adapter_id=spec.adapter_id,
        peft_dir=peft_dir,
        export=export,
        fields={
            "tenant": spec.tenant,
            "candidate_id": spec.candidate_id,
            "dataset_id": spec.dataset_id,
            "base_model": spec.base_model,
            "student": spec.student,
            "parent_adapter_id": spec.parent_adapter_id,
            "dataset_erasures": spec.dataset_erasures,
            "warm_started_from": spec.parent_adapter_id if recipe.warm_started else "",
            "status": "ready" if gate.passed else "rejected",
            "hyperparameters": {**config.model_dump(mode="json"), "device": str(device), "amp": str(amp)},
            "data": counts,
            "metrics": metrics,
            "loss_curve": {"train": state.losses, "holdout": state.evals},
            "offline_gate": gate.to_json(),
            "prompt": prompt_spec(config.data.prune, dataset),
        },
    )
    emit("progress", phase="registered", progress=1.0)
    return outcome | _outcome(manifest, store)


def prompt_spec(prune: tuple[str, ...], dataset: Path) -> dict[str, Any]:
    """The manifest's ``prompt`` field (cumulus.prompts.PromptSpec): how the gateway must render."""
    spec: dict[str, Any] = {"renderer": RENDERER, "prune": list(prune)}
    if "tools" in prune:
        spec["tool_names"] = data.tool_names(read_jsonl(dataset / "train.jsonl"))
    return spec


def _outcome(manifest: Manifest, store: ArtifactStore) -> dict[str, Any]:
    fields = manifest.fields
    gate = fields.get("offline_gate", {})
    return {
        "status": "READY" if fields.get("status") == "ready" else "REJECTED",
        "artifact_uri": store.uri("adapters", manifest.workflow, manifest.id),
        "manifest_sha256": manifest_sha256(store.path("adapters", manifest.workflow, manifest.id)),
        "lora_task_id": fields["lora_task_id"],
        "version": manifest.files["adapter_model.safetensors"].sha256[:12],
        "offline_score": gate.get("score", 0.0),
        "gate_passed": bool(gate.get("passed")),
        "metrics": {k: float(v) for k, v in fields.get("metrics", {}).items()},
        "error": _rejection(fields, gate),
    }


def _rejection(fields: dict[str, Any], gate: dict[str, Any]) -> str:
    """A rejected adapter's reason, naming the student and the data it learned from."""
    if gate.get("passed"):
        return ""
    examples = fields.get("data", {}).get("examples")
    data = f" on {examples} examples" if examples else ""
    why = f"{fields.get('base_model', '')} trained{data}: {gate.get('reason') or 'under the offline gate'}"
    ratios = (fields.get("student") or {}).get("cost_ratios") or {}
    if ratios:  # the ladder as it stood: what a next attempt could move up to
        why += "; students (cost vs live): " + ", ".join(f"{m} 1/{r:.1f}" for m, r in ratios.items())
    return why


_STOP = {"requested": False}


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent (the trainer service) dies."""
    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="the job's spec.json")
    parser.add_argument(
        "--stop-after-steps", type=int, default=0, help="interrupt (with a checkpoint) after N steps"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub on these machines: fail fast, never wait
    configure_logging()
    signal.signal(signal.SIGTERM, lambda *_: _STOP.update(requested=True))
    _die_with_parent()
    spec = JobSpec.read(args.spec)
    job_dir = Path(spec.job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    with (job_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # an orphan of a killed trainer finishes its checkpoint first
        try:
            result = run_job(spec, args.stop_after_steps)
        except TrainingInterrupted as exc:
            log.info("job.interrupted", adapter=spec.adapter_id, workflow=spec.workflow, reason=str(exc))
            return EXIT_INTERRUPTED
        except Exception as exc:  # any failure is an outcome to report, with its reason
            log.exception("job.failed", adapter=spec.adapter_id, workflow=spec.workflow)
            reason = str(exc) if isinstance(exc, CumulusError) else f"{type(exc).__name__}: {exc}"
            result = {"adapter_id": spec.adapter_id, "status": "FAILED", "error": reason[:2000]}
        write_json_atomically(job_dir / RESULT, result)
        emit("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
