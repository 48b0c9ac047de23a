"""A narrow application built from BFCL: a few tools, many requests of each kind.

BFCL's ``simple_python`` asks 400 different questions of 370 different functions: a benchmark
of breadth. The traffic this system is for is narrow: one application calling its few tools
over and over with different data. So the demo's workload takes the BFCL questions whose
numbers are all arguments of the call (``"a triangle with a base of 10 and height of 5"`` ->
``base=10, height=5``), picks a handful of their functions as the application's tools, and asks
each question again with its numbers re-drawn; the gold answer is re-drawn with them, so BFCL's
checker still judges every answer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ops.demo.bfcl import BfclItem

# A whole integer: not part of a word, a decimal or a dotted name.
_INTEGER = re.compile(r"(?<![\w.])(\d+)(?![\w.]|\.\d)")


@dataclass(frozen=True)
class Template:
    """A BFCL item whose integers (by their place in the question) are the values of arguments."""

    item: BfclItem
    slots: tuple[tuple[int, int, str, int], ...]
    """(start, end, argument, original value) per integer in the question."""

    def variant(self, rng: random.Random, n: int) -> BfclItem:
        """The question with fresh numbers, and the gold answer that goes with them."""
        values: dict[str, int] = {}
        for _, _, argument, original in self.slots:
            values[argument] = _redraw(rng, original, set(values.values()))
        question, last = [], 0
        for start, end, argument, _ in self.slots:
            question += [self.item.question[last:start], str(values[argument])]
            last = end
        question.append(self.item.question[last:])
        ((function, params),) = self.item.gold[0].items()
        gold = {
            k: ([values[k], float(values[k])] if any(isinstance(o, float) for o in v) else [values[k]])
            if k in values
            else v
            for k, v in params.items()
        }
        return replace(
            self.item, id=f"{self.item.id}-v{n}", question="".join(question), gold=[{function: gold}]
        )


def template_of(item: BfclItem) -> Template | None:
    """The item as a template, or None when its numbers do not map one to one onto arguments."""
    if len(item.gold) != 1 or len(item.functions) != 1:
        return None
    ((_, params),) = item.gold[0].items()
    slots = []
    for match in _INTEGER.finditer(item.question):
        value = int(match.group(1))
        arguments = [k for k, options in params.items() if any(_number(o) and o == value for o in options)]
        if len(arguments) != 1:
            return None
        slots.append((match.start(), match.end(), arguments[0], value))
    numeric = {k for k, options in params.items() if any(_number(o) for o in options)}
    if not slots or len({s[2] for s in slots}) != len(slots) or numeric != {s[2] for s in slots}:
        return None
    return Template(item, tuple(slots))


def narrow_app(
    items: Sequence[BfclItem], tools: int, capture: int, held_out: int, seed: int = 7
) -> tuple[list[BfclItem], list[BfclItem]]:
    """``capture`` then ``held_out`` requests of an application with ``tools`` BFCL functions.

    Requests cycle through the tools; no question (numbers included) is asked twice, and no
    held-out question was captured.
    """
    rng = random.Random(seed)
    templates = [t for t in map(template_of, items) if t is not None]
    rng.shuffle(templates)
    chosen = templates[:tools]
    if len(chosen) < tools:
        raise ValueError(f"only {len(chosen)} BFCL items can be templates; asked for {tools}")
    out: list[BfclItem] = []
    asked: set[str] = set()
    for n in range(capture + held_out):
        template = chosen[n % len(chosen)]
        for _ in range(100):
            item = template.variant(rng, n)
            if item.question not in asked:
                break
        asked.add(item.question)
        out.append(item)
    return out[:capture], out[capture:]


def _redraw(rng: random.Random, original: int, taken: set[int]) -> int:
    low, high = (original - 30, original + 5) if original >= 1000 else (1, max(60, 3 * original))
    while True:
        value = rng.randint(low, high)
        if value not in taken:
            return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
