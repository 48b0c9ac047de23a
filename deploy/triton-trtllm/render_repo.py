#!/usr/bin/env python3
"""Render the Triton model repository that serves `live` and `small` with TensorRT-LLM.

Runs inside the ``tritonserver:<ver>-trtllm-python-py3`` container before Triton starts (see
docker-compose.yml); standard library only. For each served model M it writes into ``--out``:

- ``M/``                the ensemble clients call (templates/ensemble/config.pbtxt)
- ``M_tensorrt_llm/``   the engine (templates/tensorrt_llm/config.pbtxt)
- ``M_preprocessing/``  tokenizer and ``M_postprocessing/`` detokenizer, copied from the image's
  own ``/app/all_models/inflight_batcher_llm``: their model.py reads its config by name, so the
  two must come from the same TensorRT-LLM release as the backend.

Every ``${key}`` is filled from ``<M>_<KEY>`` (e.g. ``SMALL_ENGINE_DIR``), else ``TRTLLM_<KEY>``,
else DEFAULTS below; ``engine_dir`` and ``tokenizer_dir`` have no default. A placeholder left in
a string parameter of an image config means "backend default"; anywhere else it is an error.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

SERVED_MODELS = ("live", "small")
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
UPSTREAM = Path("/app/all_models/inflight_batcher_llm")
IMAGE_COMPONENTS = ("preprocessing", "postprocessing")
MARKER = ".rendered-by-cumulus"

REQUIRED = ("engine_dir", "tokenizer_dir")
DEFAULTS = {
    "triton_max_batch_size": "64",
    "max_queue_delay_microseconds": "0",
    "max_queue_size": "0",
    "batch_scheduler_policy": "guaranteed_no_evict",
    "kv_cache_free_gpu_mem_fraction": "0.4",
    "enable_kv_cache_reuse": "false",
    "lora_cache_optimal_adapter_size": "8",
    "lora_cache_max_adapter_size": "64",
    "lora_cache_gpu_memory_fraction": "0.05",
    "lora_cache_host_memory_bytes": "1073741824",
    "lora_weights_data_type": "TYPE_FP16",
    "add_special_tokens": "false",
    "skip_special_tokens": "true",
    "preprocessing_instance_count": "1",
    "postprocessing_instance_count": "1",
}

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_UNSET_STRING_PARAMETER = re.compile(r'string_value:\s*"\$\{\w+\}"')
_NAME_LINE = re.compile(r'^name:\s*"[^"]*"', re.MULTILINE)
_TENSOR = re.compile(r'name:\s*"(\w+)"\s*data_type:\s*(\w+)')


class RenderError(Exception):
    pass


def values_for(model: str, env: Mapping[str, str]) -> dict[str, str]:
    """Placeholder values for one served model; RenderError lists every variable still unset."""
    values = {"model": model}
    missing = []
    for key in (*REQUIRED, *DEFAULTS):
        own, shared = f"{model}_{key}".upper(), f"TRTLLM_{key}".upper()
        value = env.get(own) or env.get(shared) or DEFAULTS.get(key)
        if value is None:
            missing.append(own)
        else:
            values[key] = value
    if missing:
        raise RenderError(f"model {model!r}: set {', '.join(missing)} (see deploy/triton-trtllm/README.md)")
    return values


def fill(text: str, values: Mapping[str, str], source: str) -> str:
    out = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
    leftover = sorted(set(_PLACEHOLDER.findall(_UNSET_STRING_PARAMETER.sub("", out))))
    if leftover:
        raise RenderError(f"{source}: no value for {', '.join('${' + k + '}' for k in leftover)}")
    return out


def check_engine_template(upstream: Path) -> None:
    """Fail when the image's tensorrt_llm model no longer declares a tensor our template uses.

    Our template declares a subset of the backend's tensors; this catches a renamed or retyped
    tensor after an image upgrade, at start-up instead of on the first request.
    """
    theirs_file = upstream / "tensorrt_llm" / "config.pbtxt"
    if not theirs_file.exists():
        return
    theirs = dict(_TENSOR.findall(theirs_file.read_text()))
    ours = _TENSOR.findall((TEMPLATES / "tensorrt_llm" / "config.pbtxt").read_text())
    for name, dtype in ours:
        if name not in theirs:
            raise RenderError(f"{theirs_file} does not declare {name!r}: update templates/tensorrt_llm")
        if theirs[name] != dtype:
            raise RenderError(f"{theirs_file} declares {name!r} as {theirs[name]}, our template {dtype}")


def render(out: Path, env: Mapping[str, str], upstream: Path = UPSTREAM) -> list[str]:
    """Write the whole repository into ``out`` (replacing an earlier rendering); returns model names."""
    for component in IMAGE_COMPONENTS:
        if not (upstream / component / "1" / "model.py").exists():
            raise RenderError(
                f"{upstream}/{component}/1/model.py missing: is this a -trtllm-python-py3 image?"
            )
    check_engine_template(upstream)
    _reset(out)
    written = []
    for model in SERVED_MODELS:
        values = values_for(model, env)
        for name, template in ((model, "ensemble"), (f"{model}_tensorrt_llm", "tensorrt_llm")):
            source = TEMPLATES / template / "config.pbtxt"
            _write_model(out / name, fill(source.read_text(), values, str(source)))
            written.append(name)
        for component in IMAGE_COMPONENTS:
            name = f"{model}_{component}"
            source = upstream / component / "config.pbtxt"
            text = _NAME_LINE.sub(f'name: "{name}"', source.read_text(), count=1)
            _write_model(out / name, fill(text, values, str(source)))
            shutil.copy2(upstream / component / "1" / "model.py", out / name / "1" / "model.py")
            written.append(name)
    return written


def _reset(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise RenderError(f"{out} is not empty and was not rendered by this script; refusing to wipe it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("generated by deploy/triton-trtllm/render_repo.py; edits are overwritten\n")


def _write_model(model_dir: Path, config: str) -> None:
    # Triton loads only numbered version folders, even when they are empty (ensemble, engine).
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model repository to write")
    parser.add_argument("--upstream", type=Path, default=UPSTREAM, help="the image's inflight_batcher_llm")
    args = parser.parse_args(argv)
    try:
        models = render(args.out, os.environ, args.upstream)
    except RenderError as exc:
        print(f"render_repo: {exc}", file=sys.stderr)
        return 2
    print(f"render_repo: wrote {', '.join(models)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
