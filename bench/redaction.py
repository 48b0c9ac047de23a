"""PII redaction: recall and precision per kind on a labelled corpus, and throughput on one core.

The corpus (bench/pii_corpus.py, seed 0) is ~1,100 chat, support and agent messages holding 2,400
labelled entities (264 of each structured kind, 184 of DOB, PASSPORT, NATIONAL_ID) among hard
negatives. ``Redactor(key).findings`` runs on each message's UTF-8 bytes; a finding is a true
positive when a labelled entity of the same kind overlaps it with intersection over union >= 0.5
(each label matched once): a trailing full stop taken into a password still counts, a finding
covering less than half of the entity does not, nor one of another kind. Per kind: labelled,
found, TP, recall = TP / labelled, precision = TP / found. Placeholders (already redacted text)
are not findings.

Throughput: ``redact`` over every message of the corpus, repeated to >= 5 MB, best of 3, on one
thread (no torch). Adversarial inputs of ~20 kB each (digits and spaces, a run of '1', runs of
colons, 'DE89 ' repeated, dense card numbers, dense IPs) report their cost per byte relative to
the corpus average: the detectors are RE2 and every check is bounded, so each should stay within
a small factor. The last line is one JSON object; missed targets do not fail the run::

    .venv/bin/python bench/redaction.py            # 2,400 entities, >= 5 MB timed
    .venv/bin/python bench/redaction.py --quick    # the same corpus, >= 1 MB timed
    .venv/bin/python bench/redaction.py --json     # the JSON line only
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pii_corpus import KINDS, Sample, card, generate, ip
from cumulus.privacy.detectors import STRUCTURED
from cumulus.privacy.redactor import PLACEHOLDER, Finding, Redactor

KEY = b"bench-key-0123456789abcdef"
MIN_IOU = 0.5
ADVERSARIAL_BYTES = 20_000


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    return overlap / (max(a[1], b[1]) - min(a[0], b[0])) if overlap > 0 else 0.0


def match(labels: list[tuple[str, int, int]], found: list[Finding]) -> tuple[list[bool], list[bool]]:
    """Which labels were found and which findings are true: each finding, left to right, takes the
    unmatched label of its kind it overlaps best, if their IoU is >= MIN_IOU."""
    hit, true = [False] * len(labels), [False] * len(found)
    for j, finding in enumerate(found):
        best, best_iou = -1, MIN_IOU
        for i, (kind, start, end) in enumerate(labels):
            score = iou((start, end), (finding.start, finding.end))
            if not hit[i] and kind == finding.kind and score >= best_iou:
                best, best_iou = i, score
        if best >= 0:
            hit[best] = true[j] = True
    return hit, true


def score(redactor: Redactor, corpus: list[Sample]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per kind counts and ratios, and a line for every miss and false finding (for a reader)."""
    labelled, found, tp = Counter[str](), Counter[str](), Counter[str]()
    errors: list[str] = []
    for n, sample in enumerate(corpus):
        data = sample.text.encode()
        labels = list(sample.byte_spans())
        findings = [f for f in redactor.findings(data) if f.kind != PLACEHOLDER.kind]
        hit, true = match(labels, findings)
        labelled.update(kind for kind, _, _ in labels)
        found.update(f.kind for f in findings)
        tp.update(f.kind for f, ok in zip(findings, true, strict=True) if ok)
        for (kind, start, end), ok in zip(labels, hit, strict=True):
            if not ok:
                errors.append(f"miss  {kind:<11} #{n}: {_context(data, start, end)}")
        for f, ok in zip(findings, true, strict=True):
            if not ok:
                errors.append(f"false {f.kind:<11} #{n}: {_context(data, f.start, f.end)}")
    kinds = {}
    for kind in KINDS:
        recall = tp[kind] / labelled[kind] if labelled[kind] else 1.0
        precision = tp[kind] / found[kind] if found[kind] else 1.0
        kinds[kind] = {"labelled": labelled[kind], "found": found[kind], "tp": tp[kind],
                       "recall": round(recall, 4), "precision": round(precision, 4)}  # fmt: skip
    return kinds, errors


def _context(data: bytes, start: int, end: int) -> str:
    before, value, after = (data[max(0, start - 30) : start], data[start:end], data[end : end + 20])
    return repr(
        f"{before.decode(errors='replace')}[[{value.decode(errors='replace')}]]{after.decode(errors='replace')}"
    )


def best_seconds(redactor: Redactor, texts: list[str], repeats: int, rounds: int = 3) -> float:
    """The fastest of ``rounds`` runs of ``redact`` over ``texts``, ``repeats`` times each."""
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(repeats):
            for text in texts:
                redactor.redact(text)
        best = min(best, time.perf_counter() - began)
    return best


def adversarial() -> dict[str, str]:
    """Inputs built to make a detector do more than one pass's work, ~20 kB each."""
    r = random.Random(1)

    def fill(make: Callable[[], str], sep: str = " ") -> str:
        parts, size = [], 0
        while size < ADVERSARIAL_BYTES:
            parts.append(make())
            size += len(parts[-1]) + len(sep)
        return sep.join(parts)

    return {
        "digits_and_spaces": "".join(r.choice("0123456789 ") for _ in range(ADVERSARIAL_BYTES)),
        "ones": "1" * ADVERSARIAL_BYTES,
        "colon_runs": fill(lambda: ":" * r.randint(1, 9) + r.choice(("", "1", "ab", "fe80", "2001"))),
        "iban_prefix": "DE89 " * (ADVERSARIAL_BYTES // 5),
        "dense_cards": fill(lambda: card(r), ", "),
        "dense_ips": fill(lambda: ip(r)),
    }


def throughput(redactor: Redactor, corpus: list[Sample], min_bytes: int) -> dict[str, Any]:
    texts = [sample.text for sample in corpus]
    size = sum(len(text.encode()) for text in texts)
    repeats = -(-min_bytes // size)
    seconds = best_seconds(redactor, texts, repeats)
    per_byte = seconds / (size * repeats)
    attacks = {}
    for name, text in adversarial().items():
        length = len(text.encode())
        taken = best_seconds(redactor, [text], 5) / 5
        attacks[name] = {"bytes": length, "mb_per_s": round(length / taken / 1e6, 2),
                         "cost_ratio": round(taken / length / per_byte, 2)}  # fmt: skip
    return {"bytes": size * repeats, "seconds": round(seconds, 3), "mb_per_s": round(1 / per_byte / 1e6, 2),
            "adversarial": attacks}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time >= 1 MB instead of >= 5 MB")
    parser.add_argument("--json", action="store_true", help="print the JSON line only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--entities", type=int, default=2400)
    parser.add_argument("--errors", type=int, default=40, help="misses and false findings to list")
    args = parser.parse_args()

    corpus = generate(args.seed, args.entities)
    redactor = Redactor(key=KEY)
    kinds, errors = score(redactor, corpus)
    speed = throughput(redactor, corpus, (1 if args.quick else 5) * 1_000_000)
    if not args.json:
        total = sum(row["labelled"] for row in kinds.values())
        print(f"{len(corpus)} messages, {total} entities; a finding is true at IoU >= {MIN_IOU} with a label")
        print(f"{'kind':<12}{'labelled':>9}{'found':>7}{'TP':>6}{'recall':>9}{'precision':>10}")
        for kind, row in kinds.items():
            print(f"{kind:<12}{row['labelled']:>9}{row['found']:>7}{row['tp']:>6}"
                  f"{row['recall']:>9.3f}{row['precision']:>10.3f}")  # fmt: skip
        print(f"{len(errors)} misses and false findings" + (f", first {args.errors}:" if errors else ""))
        for line in errors[: args.errors]:
            print("  " + line)
        print(f"redact: {speed['mb_per_s']} MB/s over {speed['bytes'] / 1e6:.1f} MB (best of 3, one thread)")
        for name, row in speed["adversarial"].items():
            print(f"  {name:<18} {row['mb_per_s']:>7} MB/s  {row['cost_ratio']:>5}x the corpus cost per byte")
    structured = [kinds[kind] for kind in STRUCTURED]
    targets = {
        "structured_recall>=0.99": all(row["recall"] >= 0.99 for row in structured),
        "structured_precision>=0.95": all(row["precision"] >= 0.95 for row in structured),
    }
    summary = {"messages": len(corpus), "min_iou": MIN_IOU, "kinds": kinds, "mb_per_s": speed["mb_per_s"],
               "timed_bytes": speed["bytes"], "adversarial": speed["adversarial"],
               "targets": targets}  # fmt: skip
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
