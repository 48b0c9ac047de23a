"""Normalisation shared by the deterministic graders: text, numbers, and values inside JSON.

Two outputs that differ only in ways a reader would not care about (case, spacing, punctuation
around a label; ``1`` vs ``1.0``; key order) must grade as equal, or the judge would hold a
candidate to a stricter standard than people do.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_WHITESPACE = re.compile(r"\s+")
# BFCL's AST checker removes these before comparing strings ("April 1, 2024" == "april 1 2024").
_BFCL_IGNORED = re.compile(r"[ ,./\-_*^]")
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def normalise_label(text: str) -> str:
    """Case-folded, punctuation removed, whitespace collapsed: ``" Billing! "`` -> ``"billing"``."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return _WHITESPACE.sub(" ", text).strip()


def normalise_text(text: str) -> str:
    """Case-folded with whitespace collapsed; punctuation kept (it can matter inside a JSON field)."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def standardise_argument(text: str) -> str:
    """A string argument as BFCL's checker compares it: no spaces or ``,./-_*^``, lower case, ``'``->``"``."""
    return _BFCL_IGNORED.sub("", text).lower().replace("'", '"')


def strip_code_fence(text: str) -> str:
    """The body of a Markdown code fence (```json ... ```), or the stripped text when there is none."""
    text = text.strip()
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text


def is_number(value: Any) -> bool:
    """int or float, but not bool (``True == 1`` in Python; a grader must not agree)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def numbers_equal(a: float, b: float) -> bool:
    """``1 == 1.0``; floats within a relative 1e-9 (a value printed with more digits is the same value)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def values_equal(a: Any, b: Any, normalise: Any = normalise_text) -> bool:
    """Deep equality of JSON-like values: key order ignored, numbers by value, strings by ``normalise``.

    Lists keep their order (``[1, 2]`` is not ``[2, 1]``), as BFCL's checker does: order in an
    argument list usually means something.
    """
    if is_number(a) and is_number(b):
        return numbers_equal(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return bool(normalise(a) == normalise(b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k], normalise) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y, normalise) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)
