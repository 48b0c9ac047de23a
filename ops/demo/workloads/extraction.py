"""(b) Order extraction: an order e-mail to a JSON object, a task a small model copies well.

Every message states the same facts in different words and order: who orders, what, how many,
where it ships and the order reference. The right object is the one the generator filled in.
Live does this well; the point is that a student trained on live's answers matches it at a
fraction of the cost.
"""

from __future__ import annotations

import json
import random
from typing import Any, ClassVar

from cumulus.graders.json_fields import parse_json_output
from ops.demo.workloads.base import TextItem, Workload, distinct_items

FIELDS = ("customer", "product", "quantity", "city", "order_ref")
FIRST = ("Maria", "Tom", "Aisha", "Li", "Sam", "Nina", "Omar", "Greta", "Paulo", "Yuki", "Ines", "Kofi")
LAST = ("Lopez", "Becker", "Khan", "Wei", "Carter", "Rossi", "Haddad", "Berg", "Silva", "Tanaka", "Moreau")
PRODUCTS = (
    "steel shelf bracket",
    "oak desk lamp",
    "USB-C charging dock",
    "ceramic coffee mug",
    "wool throw blanket",
    "LED strip light",
    "bamboo cutting board",
    "espresso grinder",
)
CITIES = ("Leeds", "Lyon", "Porto", "Graz", "Utrecht", "Malmo", "Bilbao", "Turin", "Cork", "Aarhus")
TEMPLATES = (
    "Hello, this is {customer}. Please send {quantity} x {product} to our office in {city}. "
    "Our reference is {order_ref}.",
    "Order {order_ref}: {quantity} units of the {product}, shipping to {city}. Thanks, {customer}",
    "Hi! {customer} here. Could we get {quantity} x {product} delivered to {city}? (ref {order_ref})",
    "Please process order {order_ref} for {customer}: {product}, quantity {quantity}, destination {city}.",
)


class ExtractionWorkload(Workload):
    name: ClassVar[str] = "extraction"
    summary: ClassVar[str] = "order e-mails to a one-line JSON object of five fields; no feedback"
    system_prompt: ClassVar[str] = (
        "Extract the order from the customer's message. Reply with one JSON object on a single "
        'line and nothing else, with exactly these keys: "customer" (full name), "product", '
        '"quantity" (an integer), "city", "order_ref".'
    )
    max_tokens: ClassVar[int] = 64
    targets: ClassVar[dict[str, Any]] = {"gold_accuracy_ratio": (">=", 0.95), "cost_ratio": (">=", 4.0)}

    def items(self, capture: int, held_out: int) -> tuple[list[TextItem], list[TextItem]]:
        rng = random.Random(23)

        def draw(_: int) -> tuple[str, str]:
            order = {
                "customer": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "product": rng.choice(PRODUCTS),
                "quantity": rng.randint(2, 40),
                "city": rng.choice(CITIES),
                "order_ref": f"{rng.choice('ABKMPTX')}{rng.choice('ABKMPTX')}-{rng.randint(1000, 9999)}",
            }
            return rng.choice(TEMPLATES).format(**order), json.dumps(order)

        out = distinct_items("order", capture + held_out, draw)
        return out[:capture], out[capture:]

    def correct(self, item: TextItem, text: str) -> bool:
        answer = parse_json_output(text)
        if not isinstance(answer, dict) or set(answer) != set(FIELDS):
            return False
        gold = json.loads(item.gold)
        return all(_same(answer[k], gold[k]) for k in FIELDS)


def _same(answer: Any, gold: Any) -> bool:
    """Field equality as a reader means it: case and surrounding space aside, ``"12"`` is 12."""
    if isinstance(gold, int):
        try:
            return int(str(answer).strip()) == gold
        except ValueError:
            return False
    return str(answer).strip().casefold() == str(gold).casefold()
