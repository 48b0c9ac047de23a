"""What counts as personal data or a secret: one RE2 pattern per shape, a check, and its neighbours.

Patterns are RE2 (google-re2), which matches in time linear in the input whatever the pattern,
so neither a built-in detector nor a tenant's own regex can be made to backtrack: a prompt of
20k digits and spaces costs what any other 20k characters cost. RE2 has no lookaround, so what
may not touch an entity on either side (a digit next to a card number, a letter next to an
IBAN) is checked on the match's two neighbours instead.

Built-in kinds: structured ones found by shape and checksum (EMAIL, PHONE, CARD with Luhn, IBAN
with mod 97, IP v4 and v6, SSN, SECRET: cloud and API keys, bearer tokens, JWTs, private keys,
``password=...`` assignments) and ones found by shape after a label (DOB after "born" or "date
of birth", PASSPORT, NATIONAL_ID). Names and postal addresses are not detected (that needs an
NER model; none ships in a package we may install).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

from cumulus.privacy import checks

Neighbours = Callable[[bytes, int, int], bool]
"""Whether the entity at text[start:end] (UTF-8 bytes) stands apart from what surrounds it."""

# Letters, digits and underscore, and every byte of a non-ASCII character (letters of other
# scripts are word characters too).
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") | frozenset(
    range(0x80, 0x100)
)
_DOT, _COLON, _PLUS, _OPEN = ord("."), ord(":"), ord("+"), ord("[")
_DIGITS = frozenset(b"0123456789")
_SEPARATORS = frozenset(b" .-")


def apart(text: bytes, start: int, end: int) -> bool:
    """Neither neighbour is a letter, digit or underscore."""
    return (start == 0 or text[start - 1] not in _WORD) and (end == len(text) or text[end] not in _WORD)


def _apart_phone(text: bytes, start: int, end: int) -> bool:
    """Apart, and not the tail or head of a longer grouped number (``4783 0599 5529 3989``)."""
    if not apart(text, start, end) or (start and text[start - 1] == _PLUS):
        return False
    before, after = text[max(start - 2, 0) : start], text[end : end + 2]
    grouped_before = len(before) == 2 and before[0] in _DIGITS and before[1] in _SEPARATORS
    grouped_after = len(after) == 2 and after[0] in _SEPARATORS and after[1] in _DIGITS
    return not (grouped_before or grouped_after)


def _apart_ipv4(text: bytes, start: int, end: int) -> bool:
    """Not part of a longer dotted number (a version 1.2.3.4.5); a full stop after it is fine."""
    if start and (text[start - 1] in _WORD or text[start - 1] == _DOT):
        return False
    after = text[end : end + 2]
    return not after or not (after[0] in _WORD or (after[0] == _DOT and after[1:2].isdigit()))


def _apart_ipv6(text: bytes, start: int, end: int) -> bool:
    """Apart, and not a subscript: ``xs[1::2]`` is a slice, ``http://[::1]:80`` an address."""
    before = text[start - 1] if start else -1
    after = text[end] if end < len(text) else -1
    if before in _WORD or before in (_COLON, _DOT) or after in _WORD or after == _COLON:
        return False
    return not (before == _OPEN and start >= 2 and text[start - 2] in _WORD)


def _anywhere(text: bytes, start: int, end: int) -> bool:
    return True


def _has_digit(match: str) -> int:
    return len(match) if any(ch.isdigit() for ch in match) else 0


@dataclass(frozen=True)
class Detector:
    """One shape of one kind: ``pattern`` (RE2) finds candidates, group ``group`` of it is the
    entity, ``check`` says how much of that is (0: none), ``neighbours`` that it stands apart."""

    kind: str
    pattern: str
    group: int = 0
    check: Callable[[str], int] | None = None
    neighbours: Neighbours = apart
    compiled: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re2.compile(self.pattern))


_MONTH = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE = (
    r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{1,2}-\d{1,2}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH},? \d{{4}}|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_LABEL_GAP = r"(?:\W{0,4}|\W{0,2}is\W{1,3})"
"""Between a label and its value: ``: ``, ``": "`` (spaced JSON), `` # ``, or `` is ``."""
_KEY_NAMES = (
    r"api[_-]?key|apikey|api[_-]?secret|secret[_-]?access[_-]?key|access[_-]?key(?:[_-]?id)?|secret[_-]?key"
    r"|client[_-]?secret|access[_-]?token|refresh[_-]?token|auth[_-]?token|private[_-]?key"
    r"|password|passwd|pwd|secret|token"
)

BUILTIN: tuple[Detector, ...] = (
    # Secrets first: a key may contain what looks like a phone number or an IBAN.
    Detector(
        "SECRET",
        r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----"
        r"(?:[\s\S]*?-----END[A-Z ]{0,40}PRIVATE KEY-----|[A-Za-z0-9+/=\s]*)",  # or cut off
        neighbours=_anywhere,
    ),
    Detector("SECRET", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    Detector("SECRET", r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"),
    Detector(
        "SECRET",
        r"sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}|[sr]k_(?:live|test)_[0-9A-Za-z]{20,}"
        r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|xox[abposr]-[A-Za-z0-9-]{10,}"
        r"|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}",
    ),
    Detector("SECRET", r"(?i:bearer)\s+([A-Za-z0-9._~+/-]{16,}=*)", group=1, neighbours=_anywhere),
    # The password of a URL with credentials (postgres://admin:S3cret@db.internal).
    Detector("SECRET", r"[A-Za-z][A-Za-z0-9+.-]*://[^:/\s@]+:([^@\s/]+)@", group=1, neighbours=_anywhere),
    Detector(
        "SECRET",
        rf"(?i:{_KEY_NAMES})[\"']?\s*[:=]\s*[\"']?([^\s\"',;<>]{{8,}})",
        group=1,
        neighbours=_anywhere,
    ),
    Detector(
        "EMAIL", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", neighbours=_anywhere
    ),
    # Groups of four (printed or not): a greedy run of single characters would swallow the head
    # of an IBAN right after another one, which finditer never goes back for.
    Detector("IBAN", r"(?i:[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?)", check=checks.iban),
    Detector(
        "CARD",
        r"\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{4,5}|\d{13,19}",
        check=checks.card,
    ),
    Detector("SSN", r"\d{3}-\d{2}-\d{4}", check=checks.ssn),
    Detector(
        "SSN",
        rf"(?i:ssn|social[ _]security(?:[ _]number|[ _]no\.?)?){_LABEL_GAP}"
        r"(\d{9}|\d{3}[ -]\d{2}[ -]\d{4})",
        group=1,
        check=checks.ssn,
    ),
    Detector(
        "DOB",
        rf"(?i:date[ _]of[ _]birth|birth[ _]?date|birthday|born(?: on)?|d\.?o\.?b\.?){_LABEL_GAP}({_DATE})",
        group=1,
    ),
    Detector(
        "PASSPORT",
        rf"(?i:passport(?:[ _-]?(?:number|no\.?)| ?#)?){_LABEL_GAP}([A-Z0-9]{{6,9}})",
        group=1,
        check=_has_digit,
    ),
    Detector(
        "NATIONAL_ID",
        r"(?i:national[ _](?:id|identity|insurance)(?:[ _]number|[ _]no\.?)?|id[ _]number"
        rf"|ni[ _](?:number|no\.?)|nino?){_LABEL_GAP}([A-Z0-9][A-Z0-9 -]{{4,18}}[A-Z0-9])",
        group=1,
        check=_has_digit,
    ),
    Detector(
        "IP",
        r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?",
        check=checks.ipv6,
        neighbours=_apart_ipv6,
    ),
    Detector("IP", rf"(?:{_OCTET}\.){{3}}{_OCTET}", neighbours=_apart_ipv4),
    Detector(
        "PHONE",
        # Separators are a space, dot or dash, never a line break (a log's next line is not the number).
        r"(?:\+|00)\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # international
        r"|(?:1[ .-])?\(\d{3}\) ?\d{3}[ .-]\d{4}"  # (555) 123-4567
        r"|(?:1[ .-])?\d{3}[ .-]\d{3}[ .-]\d{4}"  # 555-123-4567, 1-555-123-4567
        r"|0\d(?:[ .-]?\d{2}){4}"  # 01 23 45 67 89 (France)
        r"|0\d{1,4}[ .-]\d{3,4}[ .-]?\d{3,4}",  # 020 7946 0958, 06-1234 5678
        check=checks.phone,
        neighbours=_apart_phone,
    ),
)
KINDS: tuple[str, ...] = tuple(dict.fromkeys(d.kind for d in BUILTIN))
STRUCTURED = ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "SSN", "SECRET")
"""The kinds held to recall >= 0.99 and precision >= 0.95 on the labelled corpus (bench/redaction.py)."""


def custom_detector(kind: str, pattern: str) -> Detector:
    """A tenant's own kind: ``pattern`` (RE2 syntax) as a whole is the entity.

    Raises ValueError naming what is wrong (a kind that is not UPPER_SNAKE, a pattern RE2 refuses)."""
    if not kind.replace("_", "").isalnum() or not kind[:1].isalpha() or kind.upper() != kind:
        raise ValueError(
            f"kind {kind!r} must be UPPER_SNAKE_CASE (letters, digits, _), starting with a letter"
        )
    try:
        return Detector(kind, pattern, neighbours=_anywhere)
    except re2.error as exc:
        raise ValueError(f"pattern of {kind} is not RE2 syntax: {exc}") from exc


def detectors(disabled: Iterable[str] = (), custom: Mapping[str, str] | None = None) -> tuple[Detector, ...]:
    """The tenant's detectors: its own kinds first (they are what it asked for), then the built-in
    ones it did not turn off. Raises ValueError on an unknown kind to turn off."""
    off = {kind.upper() for kind in disabled}
    unknown = off - set(KINDS) - set(custom or {})
    if unknown:
        raise ValueError(
            f"no detector named {', '.join(sorted(unknown))}; built-in kinds: {', '.join(KINDS)}"
        )
    own = tuple(custom_detector(kind, pattern) for kind, pattern in (custom or {}).items())
    return tuple(d for d in own + BUILTIN if d.kind not in off)
