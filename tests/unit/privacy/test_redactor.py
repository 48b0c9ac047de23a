"""The redactor: each kind replaced by a typed placeholder consistent within a request, ordinary
numbers left alone, redacting twice a no-op, tenants' own kinds, and cost linear in the input."""

from __future__ import annotations

import random
import string
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulus.privacy.checks import iban_valid, luhn_valid
from cumulus.privacy.detectors import KINDS, detectors
from cumulus.privacy.redactor import Redactor

KEY = b"test-key-0123456789abcdef"
REDACTOR = Redactor(KEY)


@pytest.mark.parametrize(
    ("text", "kind", "left"),
    [
        ("write to jane.doe+tickets@example.co.uk today", "EMAIL", ("write to ", " today")),
        ("card 4111 1111 1111 1111 exp 12/27", "CARD", ("card ", " exp 12/27")),
        ("card 5500-0000-0000-0004.", "CARD", ("card ", ".")),
        ("amex 3782 822463 10005 ok", "CARD", ("amex ", " ok")),
        ("pay 4012888888881881 now", "CARD", ("pay ", " now")),
        ("IBAN DE89 3704 0044 0532 0130 00 and thanks", "IBAN", ("IBAN ", " and thanks")),
        ("iban gb82west12345698765432", "IBAN", ("iban ", "")),
        ("from 192.168.10.20:8080", "IP", ("from ", ":8080")),
        ("the server is 10.0.0.1.", "IP", ("the server is ", ".")),
        ("v6 2001:db8::8a2e:370:7334 here", "IP", ("v6 ", " here")),
        ("call +44 20 7946 0958 please", "PHONE", ("call ", " please")),
        ("or (555) 123-4567", "PHONE", ("or ", "")),
        ("or 0049 30 901820", "PHONE", ("or ", "")),
        ("SSN 123-45-6789 on file", "SSN", ("SSN ", " on file")),
        ("ssn: 123456789", "SSN", ("ssn: ", "")),
        ("key AKIAIOSFODNN7EXAMPLE in the log", "SECRET", ("key ", " in the log")),
        ("Authorization: Bearer abcdefghijklmnopqrstuv", "SECRET", ("Authorization: Bearer ", "")),
        ('{"password": "hunter2hunter2"}', "SECRET", ('{"password": "', '"}')),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "SECRET",
            ("aws_secret_access_key = ", ""),
        ),
        ("use sk-proj-abcdefghijklmnopqrstuvwxyz123456", "SECRET", ("use ", "")),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
            "SECRET",
            ("jwt ", ""),
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- x", "SECRET", ("", " x")),
        ("she was born on 12/05/1980 in Lyon", "DOB", ("she was born on ", " in Lyon")),
        ("date of birth: March 3, 1975.", "DOB", ("date of birth: ", ".")),
        ("passport no. X1234567 expires", "PASSPORT", ("passport no. ", " expires")),
        ("national insurance number QQ 12 34 56 C.", "NATIONAL_ID", ("national insurance number ", ".")),
        ('{"date_of_birth": "1969-08-28"}', "DOB", ('{"date_of_birth": "', '"}')),
        ("my passport number is 501159820.", "PASSPORT", ("my passport number is ", ".")),
        (
            "db postgres://admin:S3cretPass@db.internal/x",
            "SECRET",
            ("db postgres://admin:", "@db.internal/x"),
        ),
        ("appelez le 01 23 45 67 89", "PHONE", ("appelez le ", "")),
        ("mobile=+1-683-370-5129\n2024-03-10T10:00:00", "PHONE", ("mobile=", "\n2024-03-10T10:00:00")),
        ("http://[2001:db8::8a2e:370:7334]:8080/", "IP", ("http://[", "]:8080/")),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder(text: str, kind: str, left: tuple[str, str]) -> None:
    counts: Counter[str] = Counter()
    redacted = REDACTOR.redact(text, "req-1", counts)
    before, after = left
    assert redacted.startswith(before) and redacted.endswith(after), redacted
    placeholder = redacted[len(before) : len(redacted) - len(after)]
    assert placeholder.startswith(f"<{kind}_") and placeholder.endswith(">"), redacted
    assert counts == Counter({kind: 1})
    assert REDACTOR.redact(redacted, "req-1") == redacted  # twice is once


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 failed",  # 16 digits, Luhn fails: an order number
        "on 2024-01-15 at 12:30:45 total 1234.56",
        "ticket 98765 of version 1.2.3 and 1.2.3.4.5",
        "invoice 10000000, zip 94103, sha 3f2a9c1b7e",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "IBAN DE00 3704 0044 0532 0130 00",  # wrong check digits: not an IBAN (nor a phone)
        "std::vector<int> and a::b::c",
        "token: short",
        "items[::2] and xs[1::2]",  # slices, not addresses
        "Tracking number 4783 0599 5529 3989",  # no Luhn: not a card, and its tail is no phone
    ],
)
def test_ordinary_text_survives(text: str) -> None:
    assert REDACTOR.redact(text) == text


def test_a_value_gets_one_placeholder_within_a_request_and_another_in_the_next() -> None:
    prompt = REDACTOR.redact("mail jane@example.com or jane@example.com, not bob@example.com", "req-1")
    answer = REDACTOR.redact("I wrote to jane@example.com", "req-1")
    jane = answer.split()[-1]
    assert prompt.count(jane) == 2 and "bob" not in prompt and len(set(prompt.split()) & {jane}) == 1
    assert REDACTOR.redact("I wrote to jane@example.com", "req-2").split()[-1] != jane
    assert Redactor(b"another-key-0123456789").redact("I wrote to jane@example.com", "req-1") != answer


def test_two_ibans_in_a_row_and_one_after_a_code_are_both_found() -> None:
    counts: Counter[str] = Counter()
    REDACTOR.redact("from DE89 3704 0044 0532 0130 00 to GB82 WEST 1234 5698 7654 32", "r", counts)
    REDACTOR.redact("ticket TK2048 refund to DE89 3704 0044 0532 0130 00", "r", counts)
    assert counts == Counter({"IBAN": 3})


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83 WEST 1234 5698 7654 32")


def test_a_tenant_adds_its_own_kind_and_turns_one_off() -> None:
    own = Redactor(KEY, detectors(disabled=["phone"], custom={"ORDER_ID": r"ORD-\d{8}"}))
    counts: Counter[str] = Counter()
    text = own.redact("order ORD-12345678, call 555-123-4567", "r", counts)
    assert text.startswith("order <ORDER_ID_") and text.endswith(", call 555-123-4567")
    assert counts == Counter({"ORDER_ID": 1})


@pytest.mark.parametrize(
    ("disabled", "custom", "says"),
    [
        (["PHONES"], {}, "no detector named PHONES; built-in kinds: SECRET, EMAIL"),
        ([], {"order_id": "x"}, "must be UPPER_SNAKE_CASE"),
        ([], {"ORDER": "(unclosed"}, "pattern of ORDER is not RE2 syntax"),
        ([], {"BACKREF": r"(a)\1"}, "pattern of BACKREF is not RE2 syntax"),
    ],
)
def test_a_bad_detector_setting_says_what_is_wrong(
    disabled: list[str], custom: dict[str, str], says: str
) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        detectors(disabled, custom)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable + "éß€", max_size=300), st.text(max_size=8))
def test_redacting_never_grows_findings_and_is_idempotent(text: str, scope: str) -> None:
    once = REDACTOR.redact(text, scope)
    assert REDACTOR.redact(once, scope) == once
    if not REDACTOR.findings(text.encode("utf-8", "surrogatepass")):
        assert once == text


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["4111111111111111", "5500000000000004", "378282246310005"]),
    st.text(string.ascii_letters + " ,.", max_size=40),
)
def test_a_card_is_found_wherever_it_sits_in_prose(card: str, prose: str) -> None:
    text = f"{prose} {card} {prose}"
    assert card not in REDACTOR.redact(text)


def test_cost_is_linear_in_the_input_whatever_its_shape() -> None:
    """Adversarial shapes (digit runs the old card pass was cubic in, colon runs, repeated IBAN
    heads, dense entities) cost at most a small multiple per byte of the mean, and 20k digits and
    spaces are scrubbed in well under a second."""
    rng = random.Random(0)
    shapes = {
        "digits_and_spaces": " ".join(rng.choice(string.digits) for _ in range(10_000)),
        "one_digit_run": "1" * 20_000,
        "colons": ":" * 20_000,
        "hex_and_colons": "a:" * 10_000,
        "dotted_digits": "1." * 10_000,
        "iban_heads": "DE89 " * 4_000,
        "key_assignments": "password= " * 2_000,
        "unclosed_private_key": "-----BEGIN PRIVATE KEY-----" + "A" * 20_000,
        "dense_cards": "4111 1111 1111 1111 " * 1_000,
        "dense_ips": "10.1.1.1 " * 2_200,
        "prose": "The quick brown fox jumps over the lazy dog. " * 450,
    }
    per_byte = {}
    for name, text in shapes.items():
        best = min(_timed(text) for _ in range(3))
        per_byte[name] = best / len(text.encode())
    mean = sum(per_byte.values()) / len(per_byte)
    worst = max(per_byte, key=per_byte.__getitem__)
    assert per_byte[worst] <= 10 * mean, (worst, per_byte)
    assert _timed(shapes["digits_and_spaces"]) < 0.25
    # Linear, not just fast here: four times the input costs about four times as much.
    small, large = "1 " * 5_000, "1 " * 20_000
    assert min(_timed(large) for _ in range(3)) <= 8 * min(_timed(small) for _ in range(3)) + 0.002


def _timed(text: str) -> float:
    started = time.perf_counter()
    REDACTOR.redact(text, "scope")
    return time.perf_counter() - started


def test_every_builtin_kind_has_a_case_above() -> None:
    assert set(KINDS) == {
        "SECRET",
        "EMAIL",
        "IBAN",
        "CARD",
        "SSN",
        "DOB",
        "PASSPORT",
        "NATIONAL_ID",
        "IP",
        "PHONE",
    }
