"""Grader throughput: shadow pairs graded per second by each grader, on this machine's CPU.

- ``label``: short class names with noise (case, punctuation, spacing);
- ``json``: invoice-like objects, nested, keys shuffled, one field changed in half of them;
- ``tool_call``: every BFCL candidate of tests/unit/graders/bfcl_cases (five categories);
- ``semantic``: the real all-MiniLM-L6-v2, sentence pairs embedded in batches of ``--batch``.

Each grader runs through ``GraderSuite.grade_deterministic`` in batches, as the judge calls it.
The last line is one JSON object::

    .venv/bin/python bench/grader_throughput.py [--semantic-pairs 512] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cumulus.graders import GradeCase, GraderSettings, GraderSuite, MiniLMEmbedder  # noqa: E402

LABELS = ["billing", "shipping", "refund request", "technical issue", "account access", "other"]
SENTENCES = [
    "Your order has shipped and will arrive on Monday.",
    "We refunded the full amount to your card; it takes three to five days.",
    "To reset your password, open settings and choose 'forgot password'.",
    "The invoice total is 1,240 euros, due on the 30th of March.",
    "Our support team is available from nine to five on weekdays.",
    "The meeting was moved to Thursday afternoon in room 4.",
]


def label_cases(n: int, rng: random.Random) -> list[GradeCase]:
    cases = []
    for _ in range(n):
        live = rng.choice(LABELS)
        candidate = rng.choice([live.upper(), f" {live}. ", rng.choice(LABELS)])
        cases.append(GradeCase(live=live, candidate=candidate, workflow="labels"))
    return cases


def json_cases(n: int, rng: random.Random) -> list[GradeCase]:
    cases = []
    for i in range(n):
        doc = {
            "invoice_id": f"INV-{i}",
            "total": rng.randint(1, 9999),
            "currency": "EUR",
            "vendor": {"name": "ACME GmbH", "vat": "DE123", "address": {"city": "Berlin", "zip": "10115"}},
            "lines": [{"sku": f"S{k}", "qty": k + 1, "price": 9.5 * k} for k in range(3)],
        }
        other = json.loads(json.dumps(doc))
        other["total"] = float(other["total"])
        if i % 2:
            other["vendor"]["address"]["city"] = "Hamburg"
        shuffled = dict(reversed(list(other.items())))
        cases.append(GradeCase(live=json.dumps(doc), candidate=json.dumps(shuffled), workflow="invoices"))
    return cases


def tool_call_cases() -> list[GradeCase]:
    from tests.unit.graders.bfcl_cases import cases

    return [GradeCase(live=c.live, candidate=c.candidate, tools=c.tools, workflow="bfcl") for c in cases()]


def semantic_cases(n: int, rng: random.Random) -> list[GradeCase]:
    return [
        GradeCase(live=rng.choice(SENTENCES), candidate=rng.choice(SENTENCES) + " Thanks!") for _ in range(n)
    ]


def measure(suite: GraderSuite, cases: list[GradeCase], batch: int) -> dict[str, float]:
    started = time.perf_counter()
    graded = 0
    for start in range(0, len(cases), batch):
        graded += len(suite.grade_deterministic(cases[start : start + batch]))
    seconds = time.perf_counter() - started
    return {"pairs": graded, "seconds": round(seconds, 3), "pairs_per_s": round(graded / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--semantic-pairs", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    rng = random.Random(7)
    embedder = MiniLMEmbedder()
    embedder.load()
    settings = GraderSettings(
        workflow_graders={"labels": "label", "invoices": "json", "bfcl": "tool_call"}, label_max_chars=0
    )
    suite = GraderSuite(settings, embedder=embedder)
    suite.grade_deterministic(semantic_cases(8, rng))  # warm-up: first forward pass allocates
    results = {
        "label": measure(suite, label_cases(20_000, rng), args.batch),
        "json": measure(suite, json_cases(5_000, rng), args.batch),
        "tool_call": measure(suite, tool_call_cases(), args.batch),
        "semantic_minilm": measure(suite, semantic_cases(args.semantic_pairs, rng), args.batch),
    }
    for name, result in results.items():
        rate, pairs, seconds = result["pairs_per_s"], result["pairs"], result["seconds"]
        print(f"{name:16} {rate:>10} pairs/s  ({pairs} pairs in {seconds} s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
