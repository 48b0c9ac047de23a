"""The LoRA cache-miss protocol: name the task; on a miss, resend with weights and config."""

from pathlib import Path

import numpy as np
import pytest

from cumulus.artifacts import ArtifactStore, manifest_sha256
from cumulus.errors import ArtifactError, NotFound
from cumulus.trtllm import tensors
from cumulus.trtllm.errors import LoraNotCached, TritonError
from cumulus.v1 import common_pb2
from services.gateway.adapters import ArtifactAdapters, adapter_dir, read_adapter_export
from services.gateway.triton import build_request, infer_with_lora
from services.gateway.validation import Sampling
from tests.unit.gateway.fakes import FakeAdapters, FakeTriton

SAMPLING = Sampling(max_tokens=16, temperature=0.0, top_p=1.0, stop=())
TARGET = common_pb2.RouteTarget(model="small", adapter_id="ad-1", lora_task_id=42)


async def run(triton: FakeTriton, target: common_pb2.RouteTarget, adapters: FakeAdapters) -> str:
    request = build_request("live", "hello", SAMPLING, stream=False, request_id="r")
    text = ""
    async for response in infer_with_lora(triton, request, target, adapters, workflow="wf", timeout_s=5):
        delta = tensors.output_delta(response)
        text += delta.text if delta else ""
    return text


def input_names(request: object) -> list[str]:
    return [t.name for t in request.inputs]  # type: ignore[attr-defined]


async def test_cache_miss_resends_once_with_weights_then_the_id_alone_suffices() -> None:
    triton, adapters = FakeTriton(), FakeAdapters()
    assert await run(triton, TARGET, adapters) == "small says: hello"
    first, resend = triton.requests
    assert input_names(first)[-1] == "lora_task_id" and tensors.input_scalar(first, "lora_task_id") == 42
    assert input_names(resend)[-3:] == ["lora_task_id", "lora_weights", "lora_config"]
    weights = next(t for t in resend.inputs if t.name == "lora_weights")
    assert weights.datatype == "FP16" and list(weights.shape) == [1, 2, 8]
    assert len(resend.raw_input_contents) == len(resend.inputs)
    assert adapters.loads == ["ad-1"]
    await run(triton, TARGET, adapters)  # cached now: one request, no load
    assert len(triton.requests) == 3 and adapters.loads == ["ad-1"]


async def test_bare_model_sends_no_lora_inputs() -> None:
    triton = FakeTriton()
    await run(triton, common_pb2.RouteTarget(model="live"), FakeAdapters())
    assert not any(name.startswith("lora") for name in input_names(triton.requests[0]))


async def test_other_errors_are_not_retried() -> None:
    from tests.unit.gateway.fakes import Behaviour

    triton = FakeTriton(behaviours={"small": Behaviour(fail="out of memory")})
    with pytest.raises(TritonError, match="out of memory"):
        await run(triton, TARGET, FakeAdapters())
    assert len(triton.requests) == 1


async def test_a_second_miss_after_resending_is_an_error() -> None:
    class ForgetfulTriton(FakeTriton):
        async def stream(self, request, timeout_s):  # type: ignore[no-untyped-def]
            self.requests.append(request)
            raise LoraNotCached("LoRA task 42 not found in cache. Please send LoRA weights with request")
            yield  # pragma: no cover

    with pytest.raises(LoraNotCached):
        await run(ForgetfulTriton(), TARGET, FakeAdapters())


def export_adapter(
    store: ArtifactStore, workflow: str, adapter_id: str, rows: int = 4, width: int = 16
) -> None:
    """An adapter artifact with its TensorRT-LLM export (2-D weights, as hf_lora_convert may save them)."""
    with store.create("adapters", workflow, adapter_id) as writer:
        np.save(writer.file("trtllm/model.lora_weights.npy"), np.zeros((rows, width), dtype=np.float32))
        np.save(writer.file("trtllm/model.lora_config.npy"), np.zeros((1, rows, 3), dtype=np.int32))
        writer.commit({"base_model": "smollm2-135m-instruct"})


def pinned(
    target: common_pb2.RouteTarget, store: ArtifactStore, workflow: str = "wf"
) -> common_pb2.RouteTarget:
    """``target`` pinning the adapter as the store holds it now (as the router's route does)."""
    copy = common_pb2.RouteTarget()
    copy.CopyFrom(target)
    copy.adapter_sha256 = manifest_sha256(adapter_dir(store, target, workflow))
    return copy


async def test_artifact_store_loader_reads_the_verified_trtllm_export(tmp_path: Path) -> None:
    adapters = ArtifactAdapters(tmp_path)
    export_adapter(adapters.store, "wf", "ad-1")
    loaded = await adapters.load(pinned(TARGET, adapters.store), "wf")
    assert loaded.weights.shape == (1, 4, 16) and loaded.weights.dtype == np.float16
    assert loaded.config.shape == (1, 4, 3) and loaded.config.dtype == np.int32


async def test_adapter_uri_overrides_the_store_layout_but_never_leaves_the_store(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    export_adapter(store, "other-wf", "x")
    target = common_pb2.RouteTarget(
        model="small", adapter_id="x", lora_task_id=1, adapter_uri=store.uri("adapters", "other-wf", "x")
    )
    assert adapter_dir(store, target, "wf") == store.path("adapters", "other-wf", "x")
    loaded = await ArtifactAdapters(tmp_path / "artifacts").load(pinned(target, store), "wf")
    assert loaded.weights.shape == (1, 4, 16)
    elsewhere = ArtifactStore(tmp_path / "elsewhere")
    export_adapter(elsewhere, "wf", "x")
    for uri in (
        elsewhere.uri("adapters", "wf", "x"),
        store.uri("adapters", "wf", "x") + "/../../../../elsewhere",
    ):
        outside = common_pb2.RouteTarget(model="small", adapter_id="x", lora_task_id=1, adapter_uri=uri)
        with pytest.raises(ArtifactError, match="outside the artifact store"):
            await ArtifactAdapters(tmp_path / "artifacts").load(outside, "wf")


async def test_only_the_adapter_a_route_pins_is_served(tmp_path: Path) -> None:
    adapters = ArtifactAdapters(tmp_path)
    export_adapter(adapters.store, "wf", "ad-1")
    good = pinned(TARGET, adapters.store)
    await adapters.verify(good, "wf")
    with pytest.raises(ArtifactError, match="not pinned"):
        await adapters.verify(TARGET, "wf")
    # Another adapter put in its place (a new manifest, itself consistent): not the pinned one.
    folder = adapters.store.path("adapters", "wf", "ad-1")
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"ad-1"', '"ad-1" ', 1))
    with pytest.raises(ArtifactError, match="is not the one its route pins"):
        await adapters.verify(good, "wf")
    with pytest.raises(ArtifactError, match="is not the one its route pins"):
        await adapters.load(good, "wf")
    missing = pinned(TARGET, adapters.store)
    missing.adapter_id = "gone"
    with pytest.raises(NotFound, match="adapter gone not found"):
        await adapters.verify(missing, "wf")


async def test_a_refused_pin_fails_the_call_before_triton_is_asked(tmp_path: Path) -> None:
    triton, adapters = (
        FakeTriton(),
        FakeAdapters(refused={"ad-1": ArtifactError("not the one its route pins")}),
    )
    with pytest.raises(ArtifactError):
        await run(triton, TARGET, adapters)
    assert triton.requests == [] and adapters.loads == []


def test_missing_tampered_or_malformed_exports_are_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(NotFound):
        read_adapter_export(store.path("adapters", "wf", "nothing"))
    export_adapter(store, "wf", "tampered")
    np.save(store.path("adapters", "wf", "tampered") / "trtllm/model.lora_weights.npy", np.ones((4, 16)))
    with pytest.raises(ArtifactError, match="does not match"):
        read_adapter_export(store.path("adapters", "wf", "tampered"))
    with store.create("adapters", "wf", "bad") as writer:
        np.save(writer.file("trtllm/model.lora_weights.npy"), np.zeros((1, 4, 16)))
        np.save(writer.file("trtllm/model.lora_config.npy"), np.zeros((1, 5, 3)))
        writer.commit()
    with pytest.raises(ArtifactError, match="expected"):
        read_adapter_export(store.path("adapters", "wf", "bad"))
