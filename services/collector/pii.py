"""PII scrubbing for exported training data: emails, phone numbers, card numbers, IBANs, IP addresses.

Each finding is replaced by a typed placeholder (``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[IBAN]``,
``[IP]``), so a model trained on the data learns where such values go without ever seeing one.
Checksummed kinds are validated before they are replaced (Luhn for cards, ISO 7064 mod 97 for
IBANs) and IPv6 candidates must parse, so order numbers and timestamps survive. The order of
the passes matters: a card or IBAN is taken before the phone pass could claim its digits.

Scrubbing errs on the side of removal: a digit group shaped like a phone number is replaced even
if it was something else. Placeholders contain no digits or quotes, so JSON stays valid.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Runs of words that may hold an IBAN: a word starting with country letters and check digits,
# and up to 9 more single-space separated words; the valid span inside is found by checksum.
_IBAN_RUN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}[A-Za-z0-9]*(?: [A-Za-z0-9]+){0,9}")
# Runs of digit groups separated by single spaces or dashes; cards are found inside by Luhn.
_DIGIT_RUN = re.compile(r"(?<!\d)\d+(?:[ -]\d+)*(?!\d)")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![0-9A-Za-z:])"
)
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])"
)
_PHONE = re.compile(
    r"(?<![\w+])"
    r"(?:"
    r"(?:\+|00)\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}"  # international
    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}"  # (555) 123-4567
    r"|\d{3}[\s.-]\d{3}[\s.-]\d{4}"  # 555-123-4567
    r"|0\d{1,4}[\s.-]\d{3,4}[\s.-]?\d{3,4}"  # 020 7946 0958, 06-1234 5678
    r")"
    r"(?!\w)"
)
_MIN_PHONE_DIGITS, _MAX_PHONE_DIGITS = 7, 15


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    text = candidate.replace(" ", "").upper()
    if not 15 <= len(text) <= 34 or not text[:2].isalpha() or not text[2:4].isdigit():
        return False
    rearranged = text[4:] + text[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _replace_spans(run: str, kind: str, valid: Callable[[str], bool], found: Counter[str] | None) -> str:
    """Replace, left to right, the longest word-aligned spans of ``run`` that ``valid`` accepts."""
    words = re.split(r"([ -])", run)  # words at even indexes, separators at odd ones
    out: list[str] = []
    i = 0
    while i < len(words):
        for j in range(len(words) - 1, i - 1, -2):
            if valid("".join(words[i : j + 1])):
                out.append(f"[{kind}]")
                if found is not None:
                    found[kind] += 1
                i = j + 1
                break
        else:
            out.append(words[i])
            i += 1
    return "".join(out)


def _card(span: str) -> bool:
    digits = span.replace(" ", "").replace("-", "")
    return digits.isdigit() and 13 <= len(digits) <= 19 and luhn_valid(digits)


def _ipv6(match: str) -> bool:
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return False
    return True


def _phone(match: str) -> bool:
    return _MIN_PHONE_DIGITS <= len(_digits(match)) <= _MAX_PHONE_DIGITS


_PATTERN_PASSES: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    ("IP", _IPV6, _ipv6),
    ("IP", _IPV4, None),
    ("PHONE", _PHONE, _phone),
)


def scrub(text: str, found: Counter[str] | None = None) -> str:
    """``text`` with every PII finding replaced by its placeholder; counts go into ``found``."""

    def count(kind: str) -> str:
        if found is not None:
            found[kind] += 1
        return f"[{kind}]"

    text = _EMAIL.sub(lambda _: count("EMAIL"), text)
    text = _IBAN_RUN.sub(lambda m: _replace_spans(m.group(0), "IBAN", iban_valid, found), text)
    text = _DIGIT_RUN.sub(lambda m: _replace_spans(m.group(0), "CARD", _card, found), text)
    for kind, pattern, valid in _PATTERN_PASSES:

        def replace(
            match: re.Match[str], kind: str = kind, valid: Callable[[str], bool] | None = valid
        ) -> str:
            if valid is not None and not valid(match.group(0)):
                return match.group(0)
            return count(kind)

        text = pattern.sub(replace, text)
    return text
