"""The narrow application: BFCL questions with re-drawn numbers, and gold answers that follow them."""

from __future__ import annotations

import random

import pytest

from cumulus.graders import ToolCall
from ops.demo.bfcl import BfclItem, gold_correct, load_items
from ops.demo.narrow import narrow_app, template_of

pytest.importorskip("bfcl_eval", reason="bfcl-eval is installed by scripts/setup.sh (model-assets.txt)")

TRIANGLE = BfclItem(
    id="t",
    category="simple_python",
    question="Find the area of a triangle with a base of 10 units and height of 5 units.",
    functions=[{"name": "calculate_triangle_area", "parameters": {"type": "dict", "properties": {}}}],
    gold=[{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}],
)


def test_a_variant_moves_numbers_and_gold_together() -> None:
    template = template_of(TRIANGLE)
    assert template is not None
    variant = template.variant(random.Random(1), 0)
    base, height = (
        variant.gold[0]["calculate_triangle_area"]["base"][0],
        variant.gold[0]["calculate_triangle_area"]["height"][0],
    )
    assert (
        variant.question
        == f"Find the area of a triangle with a base of {base} units and height of {height} units."
    )
    assert variant.gold[0]["calculate_triangle_area"]["unit"] == ["units", ""]


def test_items_whose_numbers_are_not_all_arguments_are_not_templates() -> None:
    percent = BfclItem(
        id="p",
        category="simple_python",
        question="Future value of 1000 at 5% over 2 years",
        functions=[{"name": "fv", "parameters": {}}],
        gold=[{"fv": {"amount": [1000], "rate": [0.05], "years": [2]}}],  # 5 is not an argument value
    )
    assert template_of(percent) is None


def test_the_app_has_few_tools_no_repeated_question_and_bfcl_accepts_its_gold() -> None:
    captured, held_out = narrow_app(load_items("simple_python"), tools=12, capture=200, held_out=100)
    everything = captured + held_out
    assert len({i.functions[0]["name"] for i in everything}) <= 12
    assert len({i.question for i in everything}) == 300
    for item in everything[:40]:
        ((name, params),) = item.gold[0].items()
        call = ToolCall(name.replace(".", "_"), {k: v[0] for k, v in params.items() if v[0] != ""})
        assert gold_correct(item, [call]), item
