"""Parameters that do arithmetic in a model and in an adapter, from safetensors headers only.

Used for compute estimates, 2 x parameters x tokens per forward pass (the trainer's ladder of
students, the demo report): loading the weights is not needed, the headers carry every shape.

Not every stored tensor does arithmetic. An input embedding table is a lookup: a token picks one
row, nothing is multiplied. It costs compute only when it is also the output projection (tied
weights: no separate ``lm_head`` tensor, the logits are hidden states times that table), and then
it counts once. Where the model stores its own output projection (Qwen2.5-0.5B keeps ~136M of its
630M parameters in an untied embedding table beside ``lm_head``), counting the table too would
inflate its compute. Position embeddings are lookups as well and never count. The headers decide
whether the weights are tied: a folder without an output projection tensor can only produce logits
through its input embedding, whatever its config.json says, so config.json is not read.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

from cumulus.models.store import ensure_model

# Tensor names as Hugging Face architectures spell them (Llama/Qwen, GPT-2, BLOOM, GPT-NeoX, OPT).
INPUT_EMBEDDINGS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")
POSITION_EMBEDDINGS = ("wpe.weight", "embed_positions.weight", "position_embeddings.weight")
OUTPUT_PROJECTIONS = ("lm_head.weight", "embed_out.weight")


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Every tensor's shape in one .safetensors file (its JSON header, nothing else read)."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return {name: t["shape"] for name, t in header.items() if name != "__metadata__"}


def arithmetic_parameters(shapes: Mapping[str, Sequence[int]]) -> int:
    """Elements of the tensors a forward pass multiplies by (see the module docstring for the rule)."""
    tied = not any(name.endswith(OUTPUT_PROJECTIONS) for name in shapes)
    return sum(
        math.prod(shape)
        for name, shape in shapes.items()
        if not name.endswith(POSITION_EMBEDDINGS) and (tied or not name.endswith(INPUT_EMBEDDINGS))
    )


def folder_parameters(folder: Path) -> int:
    """Arithmetic parameters of a model folder; its shards are read together (lm_head may be in any)."""
    shapes: dict[str, list[int]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        shapes.update(safetensors_shapes(path))
    return arithmetic_parameters(shapes)


def model_parameters(model_id: str, models_dir: Path | str) -> int:
    """Arithmetic parameters of catalog model ``model_id`` (converted into ``models_dir`` if needed)."""
    return folder_parameters(ensure_model(model_id, Path(models_dir)))


def lora_parameters(weights: Path) -> int:
    """Every tensor of a LoRA's safetensors file (the A and B matrices) does arithmetic."""
    return sum(math.prod(shape) for shape in safetensors_shapes(weights).values())
