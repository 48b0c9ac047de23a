"""Checks a candidate must pass to count as an entity: checksums and number ranges.

Each takes the matched text and returns how much of it (from its start) is the entity: its
length when all of it is, a shorter length when only a prefix is (an IBAN match that ran on into
the next words), 0 when none is. The text is bounded by its pattern, so every check costs O(1)
per match and the detectors stay linear in the input.
"""

from __future__ import annotations

import ipaddress


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    text = candidate.replace(" ", "").upper()
    if not 15 <= len(text) <= 34 or not text[:2].isalpha() or not text[2:4].isdigit() or not text.isalnum():
        return False
    rearranged = text[4:] + text[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def card(match: str) -> int:
    """13-19 digits (in groups or not) passing Luhn; a trailing group may be left off."""
    for end in _group_ends(match, "- "):
        digits = match[:end].replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits):
            return end
    return 0


# ISO 13616 registry: the length of each country's IBAN (the check reads exactly that many).
IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FO", "GL", "NL"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "XK"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
}


def iban(match: str) -> int:
    """An IBAN of its country's length at the start of ``match`` (which may run on into the next
    words): one checksum per candidate, however the groups are spaced."""
    length = IBAN_LENGTHS.get(match[:2].upper())
    if length is None:
        return 0
    seen = 0
    for end, ch in enumerate(match, 1):
        seen += ch != " "
        if seen == length:
            return end if iban_valid(match[:end]) else 0
    return 0


def ssn(match: str) -> int:
    """A US social security number: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    digits = "".join(ch for ch in match if ch.isdigit())
    if len(digits) != 9:
        return 0
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return 0
    return len(match)


def ipv6(match: str) -> int:
    if ":::" in match or match.count("::") > 1:
        return 0  # cheap refusals first: runs of colons are common, valid addresses have one "::"
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return 0
    return len(match)


def phone(match: str) -> int:
    """7 to 15 digits (E.164 allows 15)."""
    return len(match) if 7 <= sum(ch.isdigit() for ch in match) <= 15 else 0


def _group_ends(match: str, separators: str) -> list[int]:
    """Ends of the prefixes of ``match`` that stop at a group boundary, longest first."""
    ends = [i for i, ch in enumerate(match) if ch in separators and i > 0 and match[i - 1] not in separators]
    return [len(match), *reversed(ends)]
