"""A seeded, labelled corpus for bench/redaction.py: chat, support and agent messages with known entities.

Each sample is one message in one of seven shapes (support ticket, chat line, e-mail, markdown
note, JSON tool-call arguments, log lines, a YAML or .env snippet) holding a few entities of the
kinds in cumulus.privacy.detectors and hard negatives no detector should take: order and invoice
numbers, Luhn-invalid 16-digit numbers, dates, times, versions, prices, git SHAs, UUIDs, ticket
ids, zip codes, file paths, sentences with numbers. Values are made valid the way real ones are
(cards with a Luhn check digit, IBANs with their mod-97 check digits, SSNs from areas that are
issued), so a miss is the detector's. Entities are dealt from a fixed quota per kind, so the counts
are exact whatever the seed.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import random
import re
import string
import uuid
from dataclasses import dataclass

from cumulus.privacy.detectors import STRUCTURED

LABELLED = ("DOB", "PASSPORT", "NATIONAL_ID")
KINDS = (*STRUCTURED, *LABELLED)
Span = tuple[str, int, int]
R = random.Random


@dataclass(frozen=True)
class Sample:
    text: str
    spans: tuple[Span, ...]
    """(kind, start, end) as character offsets into ``text``, in order."""

    def byte_spans(self) -> tuple[Span, ...]:
        """The spans as UTF-8 byte offsets, what Redactor.findings reports."""
        return tuple((k, len(self.text[:s].encode()), len(self.text[:e].encode())) for k, s, e in self.spans)


@dataclass(frozen=True)
class _Item:
    """One entity (``kind``) or hard negative (kind None) and the ways a message may carry it."""

    kind: str | None
    key: str  # its field name in JSON, logs and config
    value: str  # what is labelled
    prefix: str = ""  # written before the value but not part of it ("Bearer ")
    prose: str = "{}"  # a sentence carrying it: "{}" stands for prefix + value, "<N>" for a name


# fmt: off
ALNUM, B64 = string.ascii_letters + string.digits, string.ascii_letters + string.digits + "+/"
NAMES = ("José Müller", "Zoë Dubois", "François Lefèvre", "Søren Ågren", "Łukasz Nowak", "Renée Côté")
FIRST = ("anna", "jose", "zoe", "francois", "soren", "lukasz", "renee", "mei", "omar", "priya", "j")
LAST = ("muller", "dubois", "lefevre", "nowak", "cote", "pena", "chen", "haddad", "iyer", "smith-jones")
DOMAINS = ("example.com", "mail.example.org", "corp.acme.co.uk", "eu.support.globex.io", "uni-bonn.de")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
# BBAN layouts (n digits, a capitals, c alphanumerics) from the ISO 13616 registry.
BBAN = {"DE": "n18", "GB": "a4n14", "FR": "n10c11n2", "ES": "n20", "IT": "a1n10c12", "NL": "a4n10",
        "BE": "n12", "CH": "n5c12", "AT": "n16", "PL": "n24", "IE": "a4n14", "PT": "n21"}
# Per kind: field names, then sentences carrying it ("{}": the entity, "<N>": a person's name).
FIELDS = {
    "EMAIL": (("email", "contact_email", "reply_to"), ("You can reach me at {}.", "Please cc {} on this.",
              "**Contact:** {}", "<N> <{}> wrote:", "[email me](mailto:{})", "my old address {} bounces")),
    "PHONE": (("phone", "mobile", "contact_phone"), ("Call me on {}.", "My number is {} (mobile).", "Tel: {}",
              "please ring {} after lunch", "Téléphone : {}", "WhatsApp: {} — evenings only")),
    "CARD": (("card_number", "pan", "card"), ("I paid with card {} (exp 09/27).", "Card number: {}",
             "charge it to {} please", "Kartennummer: {}")),
    "IBAN": (("iban", "refund_iban", "account"), ("Please refund to IBAN {}.", "IBAN: {}",
             "Bankverbindung: {} (<N>)", "wire it to {} by Friday", "my account {} was debited twice")),
    "IP": (("ip", "client_ip", "remote_addr"), ("Requests come from {}.", "blocked IP {} in the firewall",
           "server listens on [{}]:8443", "`ssh admin@{}` times out")),
    "SSN": (("ssn", "employee_ssn"), ("SSN {}", "my social security number is {}", "SSN on file: {}",
            "employee {} (SSN) needs a W-2 fix")),
    "DOB": (("dob", "date_of_birth", "birth_date"), ("I was born on {}.", "Date of birth: {}", "DOB: {}",
            "D.O.B. {}", "Birthday: {}", "born {} in Lyon", "my date of birth is {}")),
    "PASSPORT": (("passport", "passport_number", "passport_no"), ("Passport no. {}", "passport number: {}",
                 "Passport #{}", "passport {} (expires 2031)", "my passport number is {}")),
    "NATIONAL_ID": (("national_id", "nino", "national_insurance_number"), ("National Insurance number: {}",
                    "NINO {}", "national ID {}.", "National identity no. {}", "ID number: {}",
                    "my national insurance number is {}")),
}
# fmt: on


def _chars(r: R, alphabet: str, n: int) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def _d(r: R, n: int) -> str:
    return _chars(r, string.digits, n)


def email(r: R) -> str:
    f, last, tag = r.choice(FIRST), r.choice(LAST), r.choice(("billing", "support", "news"))
    local = r.choice((f"{f}.{last}", f"{f}{r.randint(1, 99)}", f"{f[0]}{last}", f"{f}+{tag}", f"{f}_{last}"))
    return f"{local}@{r.choice(DOMAINS)}"


def phone(r: R) -> str:
    a, x, n, d4, d6 = r.randint(201, 989), r.randint(200, 999), _d(r, 4), _d(r, 4), _d(r, 6)
    return r.choice((  # US, UK, German, French, Dutch, with the separators people type
        f"({a}) {x}-{n}", f"{a}-{x}-{n}", f"{a}.{x}.{n}", f"{a} {x} {n}", f"+1 {a} {x} {n}",
        f"+1 ({a}) {x}-{n}", f"+1-{a}-{x}-{n}", f"+44 20 {d4} {n}", f"020 {d4} {n}", f"+44 (0)20 {d4} {n}",
        f"+44 7700 {d6}", f"07700 {d6}", f"+49 30 {d6}", f"0049 30 {d6}", f"+49 89 {x} {n}", f"+49-30-{d6}",
        f"+33 1 {n[:2]} {n[2:]} {d4[:2]} {d4[2:]}", f"+31 20 {x} {n}",
    ))  # fmt: skip


def luhn_digit(payload: str) -> str:
    """The check digit that makes ``payload`` + it pass Luhn (the payload's last digit is doubled)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        value = int(ch) * (2 - i % 2)
        total += value - 9 if value > 9 else value
    return str(-total % 10)


def card(r: R, valid: bool = True) -> str:
    """Visa, Mastercard (51-55 and 2221-2720), Amex (15 digits, 4-6-5), Discover; grouped or not."""
    prefix, length = r.choice((("4", 16), (str(r.randint(51, 55)), 16), (str(r.randint(2221, 2720)), 16),
                               (r.choice(("34", "37")), 15), ("6011", 16), ("65", 16)))  # fmt: skip
    payload = prefix + _d(r, length - len(prefix) - 1)
    check = luhn_digit(payload)
    number = payload + (check if valid else str((int(check) + r.randint(1, 9)) % 10))
    cuts = (0, 4, 10, 15) if length == 15 else (0, 4, 8, 12, 16)
    return r.choice((" ", " ", "-", "")).join(number[a:b] for a, b in itertools.pairwise(cuts))


def iban(r: R) -> str:
    country = r.choice(sorted(BBAN))
    alphabets = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}
    bban = "".join(_chars(r, alphabets[t], int(n)) for t, n in re.findall(r"([nac])(\d+)", BBAN[country]))
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))  # ISO 7064 mod 97-10
    compact = f"{country}{98 - number % 97:02d}{bban}"
    return compact if r.random() < 0.3 else " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def ip(r: R) -> str:
    if r.random() < 0.6:
        first = r.choice((10, 192, 172, r.randint(1, 223)))
        second = {192: 168, 172: r.randint(16, 31)}.get(first, r.randint(0, 255))
        return f"{first}.{second}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    low = r.choice((0x20010DB8 << 96 | r.getrandbits(r.choice((16, 32, 64))),  # documentation range
                    0xFE80 << 112 | r.getrandbits(64),  # link-local
                    (0x2000 | r.getrandbits(12)) << 112 | r.getrandbits(112)))  # fmt: skip
    v6 = ipaddress.IPv6Address(low)
    return r.choice((v6.compressed, v6.compressed, v6.exploded, "::1", f"::ffff:10.0.{r.randint(0, 255)}.7"))


def ssn(r: R) -> str:
    area = r.randint(1, 898)  # 000, 666 and 900-999 are never issued
    return f"{area + (area >= 666):03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"


def _jwt(r: R) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()

    claims = {"sub": _d(r, 6), "email": email(r), "iat": 1_700_000_000 + r.randrange(10**7)}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{_chars(r, ALNUM + '_-', 43)}"


# fmt: off
def secret(r: R) -> _Item:
    """A key or token. One with a shape of its own may stand alone in prose; a password or an AWS
    secret key is only recognisable (to a reader too) by the name it is assigned to."""
    pick, pem = r.randrange(11), r.choice(("RSA ", "EC ", "OPENSSH ", ""))
    if pick < 7:
        body = "\n".join(_chars(r, B64, 64) for _ in range(r.randint(3, 8))) + f"\n{_chars(r, B64, 30)}=="
        key, value = [
            ("aws_access_key_id", "AKIA" + _chars(r, string.ascii_uppercase + string.digits, 16)),
            ("OPENAI_API_KEY", r.choice(("sk-", "sk-proj-")) + _chars(r, ALNUM, 48)),
            ("GITHUB_TOKEN", "ghp_" + _chars(r, ALNUM, 36)),
            ("SLACK_BOT_TOKEN", f"xoxb-{_d(r, 12)}-{_d(r, 13)}-{_chars(r, ALNUM, 24)}"),
            ("google_api_key", "AIza" + _chars(r, ALNUM + "_-", 35)),
            ("id_token", _jwt(r)),
            ("private_key", f"-----BEGIN {pem}PRIVATE KEY-----\n{body}\n-----END {pem}PRIVATE KEY-----"),
        ][pick]
        return _Item("SECRET", key, value, prose=r.choice((
            "Here is the key that fails: {}", "I pasted `{}` in the channel by mistake, rotate it?",
            "token {} still works after the rotation", "```\n{}\n```")))
    if pick == 7:
        token = r.choice((_chars(r, ALNUM + "._-", r.randint(32, 64)), _jwt(r)))
        curl = "curl -H 'Authorization: {}' https://api.example.com/v2/orders"
        return _Item("SECRET", "Authorization", token, "Bearer ", r.choice((curl, "Authorization: {}")))
    key, value = r.choice((("aws_secret_access_key", _chars(r, B64, 40)),
                           (r.choice(("password", "db_password", "DB_PASSWORD", "smtp_pwd")),
                            _chars(r, ALNUM + "!@#$%^&*_-.", 14))))
    line = key + r.choice((" = ", "=", ": ")) + "{}"
    return _Item("SECRET", key, value, prose=r.choice((f"`{line}`", f"my config has {line} in it",
                                                       f"```\n{line}\n```")))


def labelled(r: R, kind: str) -> str:
    """A date of birth, passport number or national id, as each country writes them."""
    y, m, d, n8 = r.randint(1940, 2005), r.randint(1, 12), r.randint(1, 28), _d(r, 8)
    th, month = "th" if 4 <= d <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th"), MONTHS[m - 1]
    nino = r.choice("ABCEGHJKLMNPRSTWXYZ") + r.choice("ABCEGHJKLMNPRSTWXYZ") + _d(r, 6) + r.choice("ABCD")
    return r.choice({
        "DOB": (f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}",
                f"{d} {month} {y}", f"{month} {d}, {y}", f"{d}{th} of {month} {y}", f"{month[:3]} {d}, {y}"),
        # US/UK (9 digits, or a letter and 8), German, French
        "PASSPORT": (_d(r, 9), r.choice("ACEX") + n8, "C" + _chars(r, "CFGHJKLMN0123456789", 8),
                     _d(r, 2) + _chars(r, "ABCDEFGH", 2) + _d(r, 5)),
        # UK NINO (compact or grouped), Spanish DNI with its check letter, Aadhaar (12 digits)
        "NATIONAL_ID": (nino, f"{nino[:2]} {nino[2:4]} {nino[4:6]} {nino[6:8]} {nino[8]}",
                        n8 + "TRWAGMYFPDXBNJZSQVHLCKE"[int(n8) % 23],
                        f"{r.randint(2, 9)}{_d(r, 3)} {n8[:4]} {n8[4:]}"),
    }[kind])
# fmt: on


def entity(r: R, kind: str) -> _Item:
    if kind == "SECRET":
        return secret(r)
    if kind == "SSN" and r.random() < 0.25:  # unformatted: only its label tells it from any 9 digits
        value = r.choice((ssn(r).replace("-", ""), ssn(r).replace("-", " ")))
        return _Item(kind, "ssn", value, prose=r.choice(("SSN: {}", "SSN #{}", "social security no. {}")))
    keys, sentences = FIELDS[kind]
    structured = {"EMAIL": email, "PHONE": phone, "CARD": card, "IBAN": iban, "IP": ip, "SSN": ssn}.get(kind)
    value = structured(r) if structured else labelled(r, kind)
    return _Item(kind, r.choice(keys), value, prose=r.choice(sentences))


def negative(r: R) -> _Item:
    """Something with digits that is nobody's personal data (not labelled)."""
    day = f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
    clock = f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
    path = r.choice(("/var/log/app/2024-01-15.log", "C:\\Users\\josé\\report_2024.pdf", "src/app/main.py:42"))
    note = r.choice(("we processed 1,234 orders in 3 days", "error 404 after 30s on port 8080 (pid 4821)",
                     "room 12, floor 3, building 7"))  # fmt: skip
    key, value, prose = r.choice((
        ("order_id", str(r.randint(10**7, 10**10)), "Order #{} has not arrived yet."),
        ("order_ref", f"ORD-2024-{r.randint(1, 999999):06d}", "Re: order {}"),
        ("tracking", card(r, valid=False), "Tracking number {} (not a card)."),
        ("created_at", day, "It started on {}."),
        ("timestamp", f"{day}T{clock}Z", "at {} UTC"),
        ("time", clock, "the job ran at {}"),
        ("version", f"{r.randint(0, 20)}.{r.randint(0, 40)}.{r.randint(0, 9)}", "after upgrading to v{}"),
        ("amount", f"{r.randint(1, 99999)}.{r.randint(0, 99):02d}", "I was charged ${} twice"),
        ("invoice", f"INV-2024-{r.randint(1, 99999):05d}", "invoice {} is attached"),
        ("commit", f"{r.getrandbits(160):040x}"[: r.choice((7, 40))], "a regression since commit {}"),
        ("request_id", str(uuid.UUID(int=r.getrandbits(128), version=4)), "request {} failed"),
        ("ticket", f"{r.choice(('JIRA', 'OPS', 'TCK'))}-{r.randint(1, 99999)}", "see {}"),
        ("zip", r.choice(("94105", "SW1A 1AA", "75008", "94105-1234", "10115")), "ship to postcode {}"),
        ("quantity", str(r.randint(2, 5000)), "{} units of SKU-4411 at 12.50 each"),
        ("path", path, "the file {}"),
        ("note", note, "FYI {}"),
    ))  # fmt: skip
    return _Item(None, key, value, prose=prose)


Chunks = list[tuple[str, str | None]]
"""A message being written: its pieces of text, each with the kind of entity it is (None: not one)."""


def _put(out: Chunks, template: str, item: _Item, escape: bool = False) -> None:
    """``template`` with the item in place of "{}", escaped as inside a JSON string if ``escape``."""
    before, after = template.split("{}")
    prefix, value = (
        json.dumps(x, ensure_ascii=False)[1:-1] if escape else x for x in (item.prefix, item.value)
    )
    out.extend(((before + prefix, None), (value, item.kind), (after, None)))


def _prose(r: R, out: Chunks, scene: str, items: list[_Item]) -> None:
    name = r.choice(NAMES)
    subject = r.choice(("Refund not received", "Can't log in", "Problème de facturation", "My details"))
    head, tail = {
        "ticket": (f"Ticket #{r.randint(10000, 99999)}: {subject}\n\nHi team,\n", f"\n\nThanks,\n{name}"),
        "chat": ("", ""),
        "email": (f"Subject: {subject}\n\n{r.choice(('Hi', 'Bonjour', 'Hallo'))} {r.choice(NAMES)},\n\n",
                  f"\n\nCordialement,\n{name}"),
        "markdown": (f"## {subject}\n\n- ", "\n"),
    }[scene]  # fmt: skip
    out.append((head, None))
    for i, item in enumerate(items):
        if i:
            out.append(("\n- " if scene == "markdown" else r.choice((" ", " ", "\n")), None))
        # Sentences end in punctuation, as they do: a bare space between two numbers would join them.
        end = "" if scene == "markdown" or item.prose.endswith((".", ")", "`")) else "."
        _put(out, item.prose.replace("<N>", r.choice(NAMES)) + end, item)
    out.append((tail if items else "Nothing urgent, just checking in about my account." + tail, None))


def _fields(r: R, out: Chunks, scene: str, items: list[_Item]) -> None:
    """JSON tool-call arguments, key=value log lines, or YAML / .env lines: one field per item."""
    keys: list[str] = []
    for item in items:
        key = item.key
        while key in keys:  # a second email is "billing_email", as a schema would name it
            key = f"{r.choice(('alt', 'old', 'new', 'billing'))}_{key}"
        keys.append(key)
    if scene == "json":  # as models write arguments: compact or spaced
        colon, comma = (":", ",") if r.random() < 0.4 else (": ", ", ")
        tool = r.choice(("update_customer", "create_refund", "lookup_account", "send_email"))
        out.append((f'{{"name"{colon}"{tool}"{comma}"arguments"{colon}{{', None))
        for i, (key, item) in enumerate(zip(keys, items, strict=True)):
            _put(out, f'{comma if i else ""}"{key}"{colon}"{{}}"', item, escape=True)
        out.append(("}}", None))
        return
    env = scene == "config" and r.random() < 0.5
    for key, item in zip(keys, items, strict=True):
        quote = '"' if re.search(r'[\s"#:]', item.prefix + item.value) else ""
        if scene == "log":
            clock = f"{r.randint(1, 28):02d}T10:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
            out.append(
                (f"2024-03-{clock}.{r.randint(0, 999):03d}Z {r.choice(('INFO', 'WARN'))} [api] ", None)
            )
        name = f"{key.upper()}=" if env else f"{key}=" if scene == "log" else f"{key}: "
        _put(out, f"{name}{quote}{{}}{quote}\n", item, escape=bool(quote))


def generate(seed: int = 0, entities: int = 2400) -> list[Sample]:
    """Messages holding ``entities`` labelled entities in all (each structured kind 10/91 of them,
    each labelled kind 7/91) and hard negatives; the same ``seed`` gives the same corpus."""
    r = random.Random(seed)
    weights = {kind: 10 if kind in STRUCTURED else 7 for kind in KINDS}
    quota = {kind: entities * w // sum(weights.values()) for kind, w in weights.items()}
    for kind in KINDS[: entities - sum(quota.values())]:
        quota[kind] += 1
    pool = [kind for kind, n in quota.items() for _ in range(n)]
    r.shuffle(pool)
    samples = []
    while pool:
        count = min(len(pool), r.choices((0, 1, 2, 3, 4, 5), (12, 25, 25, 18, 12, 8))[0])
        items = [entity(r, pool.pop()) for _ in range(count)]
        items += [negative(r) for _ in range(r.choice((0, 1, 1, 2, 3)))]
        r.shuffle(items)
        scenes = ("ticket", "chat", "email", "markdown", "json", "log", "config")
        scene = r.choices(scenes, (3, 3, 2, 2, 3, 1, 1))[0]
        out: Chunks = []
        (_fields if scene in ("json", "log", "config") else _prose)(r, out, scene, items)
        ends = itertools.accumulate(len(text) for text, _ in out)
        spans = tuple((kind, end - len(t), end) for (t, kind), end in zip(out, ends, strict=True) if kind)
        samples.append(Sample("".join(text for text, _ in out), spans))
    return samples
