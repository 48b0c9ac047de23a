"""Dataset export: feedback rules, dedup, deterministic split, caps, and no PII in the files."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from cumulus.artifacts import ArtifactStore, verify_dir
from cumulus.config import ExportConfig
from cumulus.privacy.checks import luhn_valid
from cumulus.privacy.redactor import Redactor
from services.collector.export import (
    FeedbackNote,
    SourceRequest,
    build_dataset,
    holdout_bucket,
    is_wrong,
    normalised_prompt,
    write_dataset,
)

CFG = ExportConfig(min_examples=1, holdout_fraction=0.2)


def request(
    i: int, user: str | None = None, answer: str | None = None, system: str = "Route tickets."
) -> SourceRequest:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user or f"ticket {i}"}]
    tools = [{"name": "route", "description": "route it", "parameters": {"type": "object"}}]
    return SourceRequest(
        f"r{i}", json.dumps(messages), json.dumps(tools), answer or f'{{"team": "t{i % 3}"}}'
    )


def test_records_are_chat_messages_with_tools_and_answer() -> None:
    data = build_dataset([request(1)], {}, CFG)
    (record,) = data.train + data.holdout
    assert record["messages"][-1] == {"role": "assistant", "content": '{"team": "t1"}'}
    assert record["messages"][0]["role"] == "system"
    assert record["tools"] == [
        {
            "type": "function",
            "function": {"name": "route", "description": "route it", "parameters": {"type": "object"}},
        }
    ]
    assert record["source"] == "live" and record["request_id"] == "r1"


def test_negative_feedback_is_dropped_and_corrections_replace_the_answer() -> None:
    feedback = {
        "r1": FeedbackNote(score=0.0, label="", correction=""),
        "r2": FeedbackNote(score=None, label="Thumbs_Down", correction=""),
        "r3": FeedbackNote(score=0.1, label="bad", correction='{"team": "billing"}'),
        "r4": FeedbackNote(score=0.9, label="good", correction=""),
    }
    data = build_dataset([request(i) for i in range(1, 6)], feedback, CFG)
    kept = {r["request_id"]: r for r in data.train + data.holdout}
    assert set(kept) == {"r3", "r4", "r5"}
    assert (
        kept["r3"]["messages"][-1]["content"] == '{"team": "billing"}'
        and kept["r3"]["source"] == "correction"
    )
    assert data.counts["negative_feedback"] == 2 and data.counts["source_correction"] == 1
    # Gold for the offline gate: the correction with what live said instead; live confirmed as is.
    assert kept["r3"]["gold"] == "correction" and kept["r3"]["live_answer"] == request(3).response
    assert kept["r4"]["gold"] == "confirmed" and "live_answer" not in kept["r4"]
    assert "gold" not in kept["r5"] and data.counts["gold"] == 2


def test_prompts_equal_after_normalisation_are_kept_once_newest_first() -> None:
    newest, older, other = request(1, user="Hello   World"), request(2, user="hello world "), request(3)
    data = build_dataset([newest, older, other], {}, CFG)
    assert sorted(r["request_id"] for r in data.train + data.holdout) == ["r1", "r3"]
    assert data.counts["duplicate_prompt"] == 1


def test_split_is_by_prompt_hash_whatever_else_is_exported() -> None:
    requests = [request(i) for i in range(200)]
    first = build_dataset(requests, {}, CFG)
    again = build_dataset(list(reversed(requests[50:])), {}, CFG)  # other order, fewer requests
    side = {r["request_id"]: "train" for r in first.train} | {
        r["request_id"]: "holdout" for r in first.holdout
    }
    for r in again.train:
        assert side[r["request_id"]] == "train"
    for r in again.holdout:
        assert side[r["request_id"]] == "holdout"
    assert 20 <= len(first.holdout) <= 60  # ~20% of 200


def test_holdout_bucket_is_stable() -> None:
    key = normalised_prompt([{"role": "user", "content": "x"}], [])
    assert holdout_bucket(key) == holdout_bucket(key) and 0 <= holdout_bucket(key) < 1


def test_caps_and_a_small_dataset_still_gets_a_holdout_example() -> None:
    cfg = ExportConfig(max_examples=12, max_example_chars=200, holdout_fraction=0.01)
    requests = [request(i) for i in range(15)] + [request(99, user="x" * 500)]
    data = build_dataset(requests, {}, cfg)
    assert len(data.train) + len(data.holdout) == 12 and len(data.holdout) == 1
    assert data.counts["over_cap"] == 4


def _card(rng: random.Random) -> str:
    digits = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    check = next(d for d in string.digits if luhn_valid(digits + d))
    number = digits + check
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return number
    sep = " " if style == "space" else "-"
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


def _iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 18), ("FR", 23), ("NL", 10), ("GB", 14)])  # registry lengths
    bban = "".join(rng.choice(string.digits) for _ in range(length))
    if country in ("NL", "GB"):
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + bban
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def _phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    return rng.choice(
        [
            f"+1 {d(3)} {d(3)} {d(4)}",
            f"+44 20 {d(4)} {d(4)}",
            f"({d(3)}) {d(3)}-{d(4)}",
            f"0{d(2)} {d(4)} {d(4)}",
        ]
    )


def _seeded_pii(rng: random.Random) -> dict[str, str]:
    return {
        "email": f"{rng.choice(['ana', 'bo'])}.{rng.randrange(10**6)}@mail-{rng.randrange(99)}.example.org",
        "card": _card(rng),
        "iban": _iban(rng),
        "phone": _phone(rng),
        "ipv4": ".".join(str(rng.randrange(1, 255)) for _ in range(4)),
        "ipv6": ":".join(f"{rng.randrange(1, 0xFFFF):x}" for _ in range(8)),
    }


def test_seeded_pii_never_reaches_the_exported_files(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    seeded: list[str] = []
    requests, feedback = [], {}
    for i in range(300):
        pii = _seeded_pii(rng)
        seeded.extend(pii.values())
        user = (
            f"Ticket {i}: I am {pii['email']}, call me on {pii['phone']}.\n"
            f"My card {pii['card']} was charged, refund to {pii['iban']}. "
            f"Logged in from {pii['ipv4']} / {pii['ipv6']}."
        )
        system = f"Escalations go to ops-{i}@corp.example.com"
        answer = json.dumps({"name": "route", "arguments": {"team": "billing", "contact": pii["email"]}})
        requests.append(request(i, user=user, answer=answer, system=system))
        seeded.append(f"ops-{i}@corp.example.com")
        if i % 7 == 0:
            feedback[f"r{i}"] = FeedbackNote(0.0, "bad", f"Refund card {pii['card']} for {pii['phone']}")
    cfg = CFG.model_copy(update={"trust_live_below": 0.0})  # every answer kept, all redacted
    data = build_dataset(requests, feedback, cfg, Redactor(b"export-test-key-0123456789"))
    manifest = write_dataset(ArtifactStore(tmp_path), "acme", "wf-pii", data, "smollm2", cfg)
    folder = tmp_path / "datasets" / "wf-pii" / manifest.id
    text = "".join(p.read_text() for p in folder.iterdir())
    compact = text.replace(" ", "").replace("-", "")
    leaks = [v for v in seeded if v in text or v.replace(" ", "").replace("-", "") in compact]
    assert not leaks, leaks[:5]
    assert len(data.train) + len(data.holdout) == 300
    assert set(manifest.fields["pii_replaced"]) == {"EMAIL", "PHONE", "CARD", "IBAN", "IP"}
    assert "redacted: SECRET, EMAIL, IBAN, CARD" in " ".join(manifest.fields["filters"])
    assert verify_dir(folder).id == manifest.id


def test_placeholders_tagged_per_request_still_dedup_and_split_alike() -> None:
    """Two requests with the same prompt hold the same address under different tags: the
    dedup key and the holdout split must see one prompt."""
    redactor = Redactor(b"export-test-key-0123456789")
    same = "I am ana@example.org, where is my parcel?"
    first, second = request(1, user=same), request(2, user=same)
    data = build_dataset([first, second], {}, CFG, redactor)
    assert data.counts["duplicate_prompt"] == 1 and len(data.train) + len(data.holdout) == 1


def test_tool_call_answers_in_any_format_become_canonical_blocks() -> None:
    fenced = '```json\n{\n  "name": "route",\n  "arguments": {"team": "billing", "urgent": true}\n}\n```'
    qwen = '<tool_call>\n{"name": "route", "arguments": {"team": "billing", "urgent": true}}\n</tool_call>'
    data = build_dataset([request(1, answer=fenced), request(2, answer=qwen)], {}, CFG)
    answers = [r["messages"][-1]["content"] for r in data.train + data.holdout]
    assert answers == [qwen, qwen] and data.counts["canonical_tool_calls"] == 2
    # Not a call (plain JSON data), or the option is off: the answer is kept as written.
    data = build_dataset([request(3)], {}, CFG)
    assert [r["messages"][-1]["content"] for r in data.train + data.holdout] == ['{"team": "t0"}']
    raw = ExportConfig(min_examples=1, holdout_fraction=0.2, canonical_tool_calls=False)
    data = build_dataset([request(1, answer=fenced)], {}, raw)
    assert [r["messages"][-1]["content"] for r in data.train + data.holdout] == [fenced]


def test_unreviewed_live_answers_are_dropped_where_reviews_show_live_wrong() -> None:
    """Reviewers corrected live on 18 of 24 reviewed answers: live's other answers teach mistakes."""
    requests = [request(i, user=f"message {i}", answer="aurora-hw") for i in range(60)]
    feedback = {f"r{i}": FeedbackNote(None, "", "billing") for i in range(18)}
    feedback |= {f"r{i}": FeedbackNote(1.0, "", "") for i in range(18, 24)}
    data = build_dataset(requests, feedback, CFG.model_copy(update={"min_reviewed": 20}))
    kept = data.train + data.holdout
    assert len(kept) == 24 and all("gold" in r for r in kept)
    assert data.counts["unreviewed_live_dropped"] == 36
    assert data.live_reviewed_accuracy == 0.25

    # Fewer reviews than min_reviewed, or live right often enough: everything is kept.
    few = build_dataset(requests, feedback, CFG.model_copy(update={"min_reviewed": 30}))
    assert len(few.train + few.holdout) == 60 and few.live_reviewed_accuracy is None
    lenient = build_dataset(requests, feedback, CFG.model_copy(update={"trust_live_below": 0.2}))
    assert len(lenient.train + lenient.holdout) == 60


def test_a_correction_that_repeats_live_counts_as_live_being_right() -> None:
    requests = [request(i, user=f"message {i}", answer="billing") for i in range(30)]
    feedback = {f"r{i}": FeedbackNote(None, "", " Billing ") for i in range(25)}
    data = build_dataset(requests, feedback, CFG)
    assert len(data.train + data.holdout) == 30 and data.live_reviewed_accuracy is None


def test_feedback_calls_an_answer_wrong_by_a_different_correction_or_a_negative_note() -> None:
    cfg = ExportConfig()
    assert is_wrong(FeedbackNote(None, "", "billing"), "tech", cfg)
    assert not is_wrong(FeedbackNote(None, "", "  Billing "), "billing", cfg)  # says what it said
    assert is_wrong(FeedbackNote(0.1, "", ""), "tech", cfg) and is_wrong(
        FeedbackNote(None, "wrong", ""), "x", cfg
    )
    assert not is_wrong(FeedbackNote(0.9, "", ""), "tech", cfg)
