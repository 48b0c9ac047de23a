"""A deliberately broken adapter: random LoRA weights, pushed into the loop past the offline gate.

It is registered exactly like a trained one (PEFT files, TensorRT-LLM export, manifest with
sha256s) and announced on ``cumulus.adapters.v1`` as READY with ``gate_passed``: the offline gate
would have stopped it, and the point is to show that the router stops it on its own when it
slips through. Its manifest says ``forced_past_gate`` so nobody mistakes it for a real adapter.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cumulus.artifacts import ArtifactStore, manifest_sha256
from cumulus.kafka import codec, topics
from cumulus.kafka.publisher import EventPublisher
from cumulus.lora import lora_task_id
from cumulus.lora.registry import register_adapter, trtllm_export
from cumulus.models import ensure_model, load_causal_lm
from cumulus.v1 import events_pb2

RANK, ALPHA = 8, 16
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PRODUCER = "demo"


def make_random_adapter(base_model: str, models_dir: Path, out_dir: Path, seed: int = 0) -> None:
    """A PEFT adapter on ``base_model`` whose A and B are both random (a trained one starts B at 0)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model, _ = load_causal_lm(ensure_model(base_model, models_dir), dtype="float32")
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(out_dir))


def register_broken_adapter(
    store: ArtifactStore,
    *,
    tenant: str,
    workflow: str,
    adapter_id: str,
    base_model: str,
    models_dir: Path,
) -> events_pb2.AdapterEvent:
    """Create, register and describe (as its READY event) a random-weights adapter."""
    with tempfile.TemporaryDirectory(prefix="broken-adapter-") as tmp:
        peft_dir = Path(tmp)
        make_random_adapter(base_model, models_dir, peft_dir)
        manifest = register_adapter(
            store,
            workflow=workflow,
            adapter_id=adapter_id,
            peft_dir=peft_dir,
            export=trtllm_export(peft_dir, alpha=ALPHA, use_rslora=False),
            fields={
                "tenant": tenant,
                "candidate_id": "",
                "dataset_id": "",
                "base_model": base_model,
                "status": "ready",
                "forced_past_gate": True,
                "hyperparameters": {"lora": {"rank": RANK, "alpha": ALPHA, "targets": TARGETS}},
                "metrics": {},
            },
        )
    return events_pb2.AdapterEvent(
        meta=codec.new_meta(tenant=tenant, workflow=workflow, producer=PRODUCER),
        adapter_id=adapter_id,
        base_model=base_model,
        status=events_pb2.ADAPTER_STATUS_READY,
        artifact_uri=store.uri("adapters", workflow, adapter_id),
        lora_task_id=lora_task_id(adapter_id),
        version=manifest.files["adapter_model.safetensors"].sha256[:12],
        # Pinned like a trained one: the route must serve exactly these (bad) weights.
        manifest_sha256=manifest_sha256(store.path("adapters", workflow, adapter_id)),
        offline_score=0.0,
        gate_passed=True,
        error="forced past the offline gate by the demo",
    )


async def announce(publisher: EventPublisher, event: events_pb2.AdapterEvent) -> None:
    publisher.publish(topics.ADAPTERS, event)
    await publisher.flush(timeout_s=30.0)
