"""(a) Support routing: a customer message to one of a company's queues, where live is weak.

The system prompt lists the queues by name, the way such prompts are written; the company's
routing policy (which queue takes what) is not in it, because nobody writes a policy into a
prompt: thermostats are set up by installation partners, speakers are billed as subscriptions,
a return of something that arrived broken is a claim. A general model guesses from the names and
gets the exceptions wrong; the support team's corrections (sent as feedback on a share of
requests) carry the policy, and a small model trained on them can beat live on it.

Messages are generated from a fixed seed: product x issue kind x phrasing x the details a real
message carries (names, order numbers, how long ago); the right queue is computed by the policy.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from ops.demo.workloads.base import TextItem, Workload, distinct_items

PRODUCTS = {
    "aurora": ("Aurora mesh router", "Aurora router", "Aurora"),
    "nimbus": ("Nimbus doorbell camera", "Nimbus cam", "Nimbus"),
    "atlas": ("Atlas smart thermostat", "Atlas thermostat", "Atlas"),
    "vega": ("Vega speaker", "Vega soundbar", "Vega"),
}
ISSUES: dict[str, tuple[str, ...]] = {
    "fault": (
        "my {p} keeps rebooting every few minutes",
        "the {p} will not power on any more",
        "the {p} shows a blinking red light and does nothing",
        "since the last update my {p} freezes all the time",
    ),
    "setup": (
        "how do I get the {p} onto my wifi?",
        "I cannot pair the {p} with the app",
        "I just unboxed the {p}, what are the first steps to set it up",
    ),
    "billing": (
        "I was charged twice for the {p}",
        "the invoice for my {p} shows the wrong amount",
        "why did my card get billed again for the {p}?",
    ),
    "shipping": (
        "my {p} order still has not arrived",
        "the tracking for my {p} has not moved in a week",
        "the courier says the {p} was delivered but nothing is here",
    ),
    "return": (
        "I would like to return the {p}, it is not what I expected",
        "how do I send the {p} back for a refund",
    ),
    "damaged": (
        "the {p} arrived with a cracked case",
        "the box was crushed and the {p} inside is broken",
    ),
}
QUEUES = {
    "aurora-hw": "hardware team for routers",
    "nimbus-hw": "hardware team for cameras",
    "atlas-hw": "hardware team for thermostats",
    "vega-hw": "hardware team for speakers",
    "onboarding": "getting started with a new device",
    "install-partners": "our certified installers",
    "billing": "payments and invoices",
    "subscriptions": "plans and recurring payments",
    "logistics": "orders in transit",
    "returns": "returns and refunds",
    "claims": "insurance and warranty claims",
}
OPENINGS = ("Hi,", "Hello team,", "Hey there.", "Good morning,", "", "To whom it may concern,")
DETAILS = (
    "Order {order}.",
    "I bought it {weeks} weeks ago.",
    "My account is under {name}.",
    "This is the second time I write about it.",
    "",
    "Please help quickly.",
)
NAMES = ("Maria Lopez", "Tom Becker", "Aisha Khan", "Li Wei", "Sam Carter", "Nina Rossi", "Omar Haddad")


def queue_for(product: str, issue: str) -> str:
    """The company's routing policy (the part of it the prompt does not say)."""
    if issue == "fault":
        return f"{product}-hw"
    if issue == "setup":
        return "install-partners" if product == "atlas" else "onboarding"
    if issue == "billing":
        return "subscriptions" if product == "vega" else "billing"
    if issue == "shipping":
        return "logistics"
    return "claims" if issue == "damaged" else "returns"


class RoutingWorkload(Workload):
    name: ClassVar[str] = "routing"
    summary: ClassVar[str] = (
        "support messages to 11 queues by a policy the prompt does not state; corrections on 60% "
        "of requests teach it"
    )
    system_prompt: ClassVar[str] = (
        "You route customer support messages for a smart-home company. Reply with exactly one queue "
        "name and nothing else.\nQueues:\n" + "\n".join(f"- {q}: {what}" for q, what in QUEUES.items())
    )
    max_tokens: ClassVar[int] = 8
    feedback_share: ClassVar[float] = 0.6
    targets: ClassVar[dict[str, Any]] = {"gold_accuracy_gain": (">=", 0.10)}

    def items(self, capture: int, held_out: int) -> tuple[list[TextItem], list[TextItem]]:
        rng = random.Random(11)
        cells = [(p, i) for p in PRODUCTS for i in ISSUES]

        def draw(n: int) -> tuple[str, str]:  # every cell once, then at random
            product, issue = cells[n % len(cells)] if n < len(cells) else rng.choice(cells)
            return _message(rng, product, issue), queue_for(product, issue)

        out = distinct_items("route", capture + held_out, draw)
        rng.shuffle(out)
        return out[:capture], out[capture:]

    def correct(self, item: TextItem, text: str) -> bool:
        return _label(text) == item.gold


def _message(rng: random.Random, product: str, issue: str) -> str:
    phrasing = rng.choice(ISSUES[issue]).format(p=rng.choice(PRODUCTS[product]))
    detail = rng.choice(DETAILS).format(
        order=f"#{rng.randint(10000, 99999)}", weeks=rng.randint(1, 9), name=rng.choice(NAMES)
    )
    parts = [
        rng.choice(OPENINGS),
        phrasing[0].upper() + phrasing[1:] + ".",
        detail,
        rng.choice(("Thanks", "")),
    ]
    return " ".join(p for p in parts if p).replace("?.", "?")


def _label(text: str) -> str:
    """The queue a reply names: its first word, lower-cased, without quotes or a full stop."""
    words = text.strip().strip("`'\"").split()
    return words[0].strip(".,'\"`").lower() if words else ""
