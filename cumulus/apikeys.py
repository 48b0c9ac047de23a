"""API keys → tenants, stored hashed (SHA-256) so the key file never holds a usable secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

KEY_PREFIX = "cmk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeyStore:
    """A JSON file ``{sha256(key): tenant}``; the gateway reads it, the CLI writes it.

    Operator tokens use the same file format under their own prefix (cumulus/operators.py), the
    value being ``<scope>:<name>`` instead of a tenant."""

    def __init__(self, path: Path, prefix: str = KEY_PREFIX) -> None:
        self.path = path
        self.prefix = prefix

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return {str(k): str(v) for k, v in data.items()}

    def issue(self, tenant: str) -> str:
        """Create a new key for tenant, store its hash, and return the key (shown once)."""
        key = self.prefix + secrets.token_urlsafe(24)
        keys = self._load()
        keys[hash_key(key)] = tenant
        write_private(self.path, json.dumps(keys, indent=1, sort_keys=True))
        return key

    def revoke(self, key: str) -> bool:
        """Remove ``key``; False when it was not there. Gateways notice the file change at once."""
        keys = self._load()
        if keys.pop(hash_key(key), None) is None:
            return False
        write_private(self.path, json.dumps(keys, indent=1, sort_keys=True))
        return True

    def tenant_for(self, key: str) -> str | None:
        digest = hash_key(key)
        for stored, tenant in self._load().items():
            if hmac.compare_digest(stored, digest):
                return tenant
        return None


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


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, readable by its owner only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
