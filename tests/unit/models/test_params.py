"""Parameter counts from hand-written safetensors files: lookups are left out, a tied table counts once."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from cumulus.models.params import folder_parameters, safetensors_shapes

VOCAB, HIDDEN = 1000, 16
LAYER = {
    "model.layers.0.self_attn.q_proj.weight": [HIDDEN, HIDDEN],
    "model.layers.0.mlp.up_proj.weight": [4 * HIDDEN, HIDDEN],
    "model.layers.0.input_layernorm.weight": [HIDDEN],
    "model.norm.weight": [HIDDEN],
}
LAYER_PARAMS = sum(math.prod(shape) for shape in LAYER.values())
TABLE = VOCAB * HIDDEN


def _write(path: Path, shapes: dict[str, list[int]]) -> None:
    """A valid .safetensors file of zeros: 8-byte header length, JSON header, then the data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def test_a_tied_embedding_counts_once_as_the_output_projection(tmp_path: Path) -> None:
    _write(tmp_path / "model.safetensors", {"model.embed_tokens.weight": [VOCAB, HIDDEN], **LAYER})
    assert folder_parameters(tmp_path) == TABLE + LAYER_PARAMS


def test_an_untied_input_embedding_is_a_lookup_and_not_counted(tmp_path: Path) -> None:
    _write(
        tmp_path / "model.safetensors",
        {"model.embed_tokens.weight": [VOCAB, HIDDEN], "lm_head.weight": [VOCAB, HIDDEN], **LAYER},
    )
    assert len(safetensors_shapes(tmp_path / "model.safetensors")) == len(LAYER) + 2
    assert folder_parameters(tmp_path) == TABLE + LAYER_PARAMS  # lm_head, not the table


def test_shards_are_read_together_so_an_lm_head_in_another_shard_unties(tmp_path: Path) -> None:
    _write(tmp_path / "model-00001-of-00002.safetensors", {"model.embed_tokens.weight": [VOCAB, HIDDEN]})
    _write(tmp_path / "model-00002-of-00002.safetensors", {**LAYER, "lm_head.weight": [VOCAB, HIDDEN]})
    assert folder_parameters(tmp_path) == TABLE + LAYER_PARAMS


def test_position_embeddings_are_lookups_and_never_counted(tmp_path: Path) -> None:
    _write(
        tmp_path / "model.safetensors",
        {"transformer.wte.weight": [VOCAB, HIDDEN], "transformer.wpe.weight": [512, HIDDEN], **LAYER},
    )
    assert folder_parameters(tmp_path) == TABLE + LAYER_PARAMS  # GPT-2 style: wte tied, wpe left out
