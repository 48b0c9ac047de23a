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
    """A JSON file ``{sha256(key): tenant}``; the gateway reads it, the CLI writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return {str(k): str(v) for k, v in data.items()}

    def issue(self, tenant: str) -> str:
        """Create a new key for tenant, store its hash, and return the key (shown once)."""
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        keys = self._load()
        keys[hash_key(key)] = tenant
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(keys, indent=1, sort_keys=True))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
        return key

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
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    return key
