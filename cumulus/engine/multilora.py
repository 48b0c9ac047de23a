"""Mixed-adapter batches in one forward pass: every row of a batch may use its own LoRA adapter.

The S-LoRA/Punica idea on CPU. Each target ``nn.Linear`` of the base model (q/k/v/o and
gate/up/down of every decoder layer) is wrapped by a ``MultiLoraLinear`` that keeps the weights of
every resident adapter stacked, one *slot* per adapter (``A [slots, in, r]``, ``B [slots, r, out]``;
slot 0 is the bare base model and stays zero), and adds each row's delta with batched matmuls
instead of PEFT's loop over adapters:

- one adapter for the whole batch: ``(x @ A[s]) @ B[s]``;
- a mixed batch: ``bmm(bmm(x, A[rows]), B[rows])``, with ``A[rows]``/``B[rows]`` gathered once per
  routing (a batch keeps its rows for many decode steps; only finished rows leave it).

Deltas are computed in fp32 whatever the model's dtype: on CPU, fp32 matmuls of these tiny shapes
cost a third of bf16 ones, and the adapter weights keep their precision. Slots share one rank per
layer, the largest loaded so far (smaller adapters are zero-padded, which is exact).
``MultiLora.bind`` gives the adapters of a batch slots (evicting the least recently used ones the
batch does not need) and routes its rows; only the engine thread calls it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cumulus.errors import InvalidArgument
from cumulus.lora.trtllm import SUPPORTED_TARGETS

_TARGET = re.compile(rf"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.({'|'.join(SUPPORTED_TARGETS)})$")


@dataclass(eq=False)
class LoraWeights:
    """A parsed adapter, ready to be copied into a slot: per (layer, module) ``a [in, r]``, ``b [r, out]``."""

    task_id: int
    modules: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]
    rank: int


@dataclass(eq=False)
class Routing:
    """Which slot each row of the running batch uses."""

    rows: torch.Tensor | None = None
    """``[batch]`` slot per row; None when no row uses an adapter."""
    used: int = 0
    """Bitmask of the slots in use."""
    uniform: int | None = None
    """The one slot every row uses, if they all use the same."""

    def clear(self) -> None:
        self.rows, self.used, self.uniform = None, 0, None


class MultiLoraLinear(nn.Module):
    """A base ``nn.Linear`` plus the per-row LoRA delta of the batch's adapters.

    ``MultiLora`` sets ``rows_a``/``rows_b`` whenever the batch's routing changes, so ``forward``
    holds no bookkeeping: it is the same few tensor ops on every decode step (and traceable by
    ``torch.compile``). They are ``A [in, r]``/``B [r, out]`` views of one slot when every row
    uses the same adapter, ``[batch, in, r]``/``[batch, r, out]`` gathered per row when they mix,
    and None when no row uses an adapter that touches this module.
    """

    def __init__(self, base: nn.Linear, slots: int) -> None:
        super().__init__()
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.loaded = 0
        """Bitmask of the slots holding a non-zero delta for this module."""
        self.a = torch.zeros(slots, self.in_features, 0)
        self.b = torch.zeros(slots, 0, self.out_features)
        self.rows_a: torch.Tensor | None = None
        self.rows_b: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return int(self.a.shape[2])

    def grow(self, rank: int) -> None:
        """Zero-pad every slot to ``rank``."""
        a = self.a.new_zeros(self.a.shape[0], self.in_features, rank)
        b = self.b.new_zeros(self.b.shape[0], rank, self.out_features)
        a[:, :, : self.rank], b[:, : self.rank] = self.a, self.b
        self.a, self.b = a, b

    def write(self, slot: int, weights: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Put one adapter's weights for this module into ``slot`` (None: the adapter leaves it alone)."""
        self.a[slot].zero_()
        self.b[slot].zero_()
        self.loaded &= ~(1 << slot)
        if weights is not None:
            a, b = weights
            self.a[slot, :, : a.shape[1]] = a
            self.b[slot, : b.shape[0]] = b
            self.loaded |= 1 << slot

    def route(self, routing: Routing) -> None:
        """Take the weights ``routing``'s rows need (see the class docstring)."""
        if routing.rows is None or not self.loaded & routing.used:
            self.rows_a = self.rows_b = None
        elif routing.uniform is not None:
            self.rows_a, self.rows_b = self.a[routing.uniform], self.b[routing.uniform]
        else:
            self.rows_a, self.rows_b = self.a[routing.rows], self.b[routing.rows]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.linear(x, self.base.weight, self.base.bias)
        a, b = self.rows_a, self.rows_b
        if a is None or b is None:
            return y
        h = x.float()
        delta = (h @ a) @ b if a.dim() == 2 else torch.bmm(torch.bmm(h, a), b)
        return y + delta.to(y.dtype)


class MultiLora:
    """Wraps a causal LM's target layers and manages its adapter slots (see the module docstring)."""

    def __init__(self, model: Any, *, slots: int) -> None:
        if slots < 2:
            raise InvalidArgument("slots", "need the base slot and at least one adapter slot")
        self.routing = Routing()
        self.slots = slots
        self.layers: dict[tuple[int, str], MultiLoraLinear] = {}
        for name, module in list(model.named_modules()):
            match = _TARGET.search(name)
            if match and isinstance(module, nn.Linear):
                parent = model.get_submodule(name.rpartition(".")[0])
                wrapped = MultiLoraLinear(module, slots)
                setattr(parent, match[2], wrapped)
                self.layers[(int(match[1]), match[2])] = wrapped
        if not self.layers:
            raise InvalidArgument("model", "has no decoder-layer projections LoRA can target")
        self.dims = {module: (w.in_features, w.out_features) for (_, module), w in self.layers.items()}
        self.num_layers = 1 + max(layer for layer, _ in self.layers)
        self._resident: OrderedDict[int, tuple[int, LoraWeights]] = OrderedDict()
        """id(weights) -> (slot, weights), least recently used first. Keyed by the object, not the
        task id: weights re-sent for a task id get a slot of their own, never overwrite one in use."""

    def bind(self, adapters: Sequence[LoraWeights | None]) -> None:
        """Route a batch: row i uses ``adapters[i]`` (None: the base model)."""
        wanted = {id(w): w for w in adapters if w is not None}
        if not wanted:
            self.release()
            return
        if len(wanted) >= self.slots:
            raise InvalidArgument(
                "lora_task_id", f"{len(wanted)} adapters in one batch; {self.slots - 1} fit"
            )
        slot_of = {key: self._slot_for(weights, wanted) for key, weights in wanted.items()}
        rows = [slot_of[id(w)] if w is not None else 0 for w in adapters]
        self._route(torch.tensor(rows))

    def select(self, keep: torch.Tensor) -> None:
        """Rows ``keep`` of the batch go on (the engine dropped the others from its KV cache)."""
        if self.routing.rows is not None:
            self._route(self.routing.rows[keep])

    def release(self) -> None:
        """No batch is running: every layer is back to the bare base model."""
        self.routing.clear()
        for layer in self.layers.values():
            layer.route(self.routing)

    def _route(self, rows: torch.Tensor) -> None:
        slots = set(rows.tolist())
        routing = self.routing
        routing.rows = rows
        routing.used = sum(1 << s for s in slots if s)
        routing.uniform = slots.pop() if len(slots) == 1 else None
        for layer in self.layers.values():
            layer.route(routing)

    def _slot_for(self, weights: LoraWeights, wanted: dict[int, LoraWeights]) -> int:
        resident = self._resident.get(id(weights))
        if resident is not None:
            self._resident.move_to_end(id(weights))
            return resident[0]
        taken = {slot for slot, _ in self._resident.values()}
        free = [s for s in range(1, self.slots) if s not in taken]
        if free:
            slot = free[0]
        else:  # the least recently used adapter this batch does not need
            victim = next(key for key in self._resident if key not in wanted)
            slot = self._resident.pop(victim)[0]
        self._load(slot, weights)
        self._resident[id(weights)] = (slot, weights)
        return slot

    def _load(self, slot: int, weights: LoraWeights) -> None:
        for key, layer in self.layers.items():
            if weights.rank > layer.rank:
                layer.grow(weights.rank)
            layer.write(slot, weights.modules.get(key))
