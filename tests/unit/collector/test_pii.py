"""The PII scrubber: every kind found, checksums respected, ordinary numbers left alone."""

from __future__ import annotations

from collections import Counter

import pytest

from services.collector.pii import iban_valid, luhn_valid, scrub


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to jane.doe+tickets@example.co.uk today", "write to [EMAIL] today", "EMAIL"),
        ("card 4111 1111 1111 1111 exp 12/27", "card [CARD] exp 12/27", "CARD"),
        ("card 5500-0000-0000-0004.", "card [CARD].", "CARD"),
        ("pay 4012888888881881 now", "pay [CARD] now", "CARD"),
        ("IBAN DE89 3704 0044 0532 0130 00 and thanks", "IBAN [IBAN] and thanks", "IBAN"),
        ("iban gb82west12345698765432", "iban [IBAN]", "IBAN"),
        ("from 192.168.10.20:8080", "from [IP]:8080", "IP"),
        ("v6 2001:db8::8a2e:370:7334 here", "v6 [IP] here", "IP"),
        ("call +44 20 7946 0958 please", "call [PHONE] please", "PHONE"),
        ("or (555) 123-4567", "or [PHONE]", "PHONE"),
        ("or 555.123.4567", "or [PHONE]", "PHONE"),
        ("or 020 7946 0958", "or [PHONE]", "PHONE"),
        ("or 0049 30 901820", "or [PHONE]", "PHONE"),
    ],
)
def test_each_kind_is_replaced(text: str, expected: str, kind: str) -> None:
    found: Counter[str] = Counter()
    assert scrub(text, found) == expected
    assert found == Counter({kind: 1})


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 failed",  # 16 digits, Luhn fails: an order number, not a card
        "on 2024-01-15 at 12:30:45 total 1234.56",
        "ticket 98765 of version 1.2.3",
        "invoice 10000000",
    ],
)
def test_ordinary_numbers_survive(text: str) -> None:
    assert scrub(text) == text


def test_a_bad_checksum_is_not_an_iban_but_digit_groups_still_look_like_a_phone() -> None:
    found: Counter[str] = Counter()
    scrub("IBAN DE00 3704 0044 0532 0130 00", found)  # wrong check digits
    assert "IBAN" not in found and found["PHONE"] == 1  # scrubbing errs on the side of removal


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83 WEST 1234 5698 7654 32")


def test_placeholders_keep_json_valid_and_are_stable() -> None:
    text = '{"email": "a@b.io", "ip": "10.0.0.1"}'
    once = scrub(text)
    assert once == '{"email": "[EMAIL]", "ip": "[IP]"}'
    assert scrub(once) == once
