"""The training loss, computed only where it counts and in shapes the CPU kernels can reuse.

Two choices make a step cheaper than ``model(input_ids, labels=...)``:

- the decoder's hidden states are projected to the vocabulary (the largest matmul of a small
  model, followed by a vocabulary-wide softmax) only at trained positions: the answer tokens
  with completion-only loss, never padding;
- shapes repeat: rows are padded to a fixed width (``max_seq_len`` when packed, else a multiple
  of ``SHAPE_BUCKET``) and the trained positions to a multiple of ``SHAPE_BUCKET``. oneDNN
  compiles its bf16 kernels per shape; with a new shape every step, compiling dominated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch

from services.trainer.data import IGNORE, Example, collate

SHAPE_BUCKET = 64


def summed_loss(
    decoder: Any,
    lm_head: Any,
    rows: Sequence[Sequence[Example]],
    *,
    pad_id: int,
    width: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the trained positions of ``rows``, and their count.

    ``width``: rows are padded to a multiple of it.
    """
    batch = {k: v.to(device) for k, v in collate(rows, pad_id, multiple=width).items()}
    targets = batch["labels"][:, 1:].reshape(-1)
    where = torch.nonzero(targets != IGNORE).squeeze(1)
    count = int(where.numel())
    where = torch.cat([where, where.new_zeros(-count % SHAPE_BUCKET)])  # padded with ignored ones
    with autocast():
        hidden = decoder(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).last_hidden_state
        logits = lm_head(hidden[:, :-1].reshape(-1, hidden.shape[-1])[where])
    padding = torch.arange(where.numel(), device=where.device) >= count
    loss = torch.nn.functional.cross_entropy(
        logits.float(), targets[where].masked_fill(padding, IGNORE), reduction="sum"
    )
    return loss, count
