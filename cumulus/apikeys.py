"""API keys → tenants, stored hashed (SHA-256) so the key file never holds a usable secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

KEY_PREFIX = "cmk_"
KEY_ID_LENGTH = 12
_HEADER = "authorization"
_SCHEME = "bearer "

Metadata = Iterable[tuple[str, str | bytes]]
"""gRPC invocation metadata, or HTTP headers as (name, value) pairs."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """What the key file holds for one key: never the key itself."""

    key_id: str
    """The first 12 hex digits of the key's sha256: names the key in lists and revocations."""
    owner: str
    """The tenant (API keys) or ``<scope>:<name>`` (operator tokens, cumulus/operators.py)."""
    created_at: float = 0.0
    expires_at: float | None = None

    def valid(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


class ApiKeyStore:
    """A JSON file ``{sha256(key): {"owner", "created_at", "expires_at"}}``; the gateway reads it,
    the CLI writes it (`cumulus keys`). An older file's plain ``{sha256(key): tenant}`` entries still
    read as keys that never expire.

    Operator tokens use the same file format under their own prefix (cumulus/operators.py)."""

    def __init__(self, path: Path, prefix: str = KEY_PREFIX) -> None:
        self.path = path
        self.prefix = prefix

    def _load(self) -> dict[str, KeyRecord]:
        if not self.path.exists():
            return {}
        records = {}
        for digest, value in json.loads(self.path.read_text()).items():
            entry = value if isinstance(value, dict) else {"owner": str(value)}
            expires = entry.get("expires_at")
            records[str(digest)] = KeyRecord(
                str(digest)[:KEY_ID_LENGTH],
                str(entry["owner"]),
                float(entry.get("created_at") or 0.0),
                None if expires is None else float(expires),
            )
        return records

    def _save(self, records: dict[str, KeyRecord]) -> None:
        data = {
            digest: {"owner": r.owner, "created_at": r.created_at, "expires_at": r.expires_at}
            for digest, r in records.items()
        }
        write_private(self.path, json.dumps(data, indent=1, sort_keys=True))

    def issue(self, tenant: str, ttl_s: float | None = None) -> str:
        """Create a new key for tenant (expiring after ``ttl_s`` if given); returns it, shown once."""
        key = self.prefix + secrets.token_urlsafe(24)
        records = self._load()
        now = time.time()
        digest = hash_key(key)
        records[digest] = KeyRecord(
            digest[:KEY_ID_LENGTH], tenant, now, None if ttl_s is None else now + ttl_s
        )
        self._save(records)
        return key

    def records(self) -> list[KeyRecord]:
        return sorted(self._load().values(), key=lambda r: (r.owner, r.created_at))

    def revoke(self, key: str) -> bool:
        """Remove ``key``; False when it was not there. Gateways notice the file change at once."""
        return self.revoke_id(hash_key(key)[:KEY_ID_LENGTH])

    def revoke_id(self, key_id: str) -> bool:
        """Remove the key named ``key_id`` (see KeyRecord.key_id); False when there is none."""
        records = self._load()
        kept = {d: r for d, r in records.items() if r.key_id != key_id}
        if len(kept) == len(records):
            return False
        self._save(kept)
        return True

    def rotate(self, key_id: str, grace_s: float) -> str | None:
        """A new key for the owner of ``key_id``, whose old key now expires after ``grace_s``."""
        records = self._load()
        old = next(((d, r) for d, r in records.items() if r.key_id == key_id), None)
        if old is None:
            return None
        digest, record = old
        ends = time.time() + grace_s
        records[digest] = replace(record, expires_at=min(record.expires_at or ends, ends))
        self._save(records)
        left = record.expires_at - time.time() if record.expires_at else None
        return self.issue(record.owner, left if left is not None and left > grace_s else None)

    def lookup(self, key: str) -> KeyRecord | None:
        """The record of ``key`` (expired or not), else None."""
        digest = hash_key(key)
        for stored, record in self._load().items():
            if hmac.compare_digest(stored, digest):
                return record
        return None

    def tenant_for(self, key: str) -> str | None:
        """The owner of ``key`` while it is valid; None for unknown and expired keys."""
        record = self.lookup(key)
        return record.owner if record is not None and record.valid(time.time()) else None


def ensure_dev_key(state_dir: Path, tenant: str = "dev") -> str:
    """The local stack's dev key: reused from ``<state_dir>/dev-api-key`` while still valid."""
    store = ApiKeyStore(state_dir / "api-keys.json")
    key_file = state_dir / "dev-api-key"
    if key_file.exists():
        key = key_file.read_text().strip()
        if store.tenant_for(key) == tenant:
            return key
    key = store.issue(tenant)
    write_private(key_file, key + "\n")
    return key


def bearer_key(metadata: Metadata | None) -> str | None:
    """The key of the first ``authorization: Bearer <key>`` entry of gRPC metadata or HTTP headers."""
    for name, value in metadata or ():
        if name.lower() != _HEADER:
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if text[: len(_SCHEME)].lower() == _SCHEME and text[len(_SCHEME) :].strip():
            return text[len(_SCHEME) :].strip()
    return None


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, readable by its owner only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
