"""API-key authentication: ``authorization: Bearer <key>`` metadata -> the caller's tenant.

Keys live hashed in the ApiKeyStore file (written by ``cumulus up`` / the CLI). Looking a key up
reads that file, so answers are cached per key digest and the cache is dropped whenever the
file's modification time changes: a newly issued or revoked key takes effect on the next request,
and an expiring key stops at its expiry (`cumulus keys`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc

from cumulus.apikeys import ApiKeyStore, KeyRecord, Metadata, bearer_key, hash_key
from cumulus.errors import Unauthenticated

__all__ = ["Authenticator", "bearer_key"]

_CACHE_LIMIT = 10_000


class Authenticator:
    """Resolves the tenant of a request from its metadata, or raises Unauthenticated."""

    def __init__(self, keys_file: Path) -> None:
        self._store = ApiKeyStore(keys_file)
        self._keys_file = keys_file
        self._stamp: tuple[int, int] | None = None
        self._records: dict[str, KeyRecord | None] = {}

    def tenant_for_metadata(self, metadata: Metadata | None) -> str:
        """The tenant owning the bearer key in ``metadata``."""
        key = bearer_key(metadata)
        if key is None:
            raise Unauthenticated(
                "missing API key", fix="send metadata `authorization: Bearer <key>` (see `cumulus up`)"
            )
        tenant = self._lookup(key)
        if tenant is None:
            raise Unauthenticated("unknown API key", fix="use a key issued for your tenant")
        return tenant

    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        """The tenant of the RPC behind ``context``."""
        return self.tenant_for_metadata(context.invocation_metadata())

    def _lookup(self, key: str) -> str | None:
        self._drop_cache_if_file_changed()
        digest = hash_key(key)
        if digest not in self._records:
            if len(self._records) >= _CACHE_LIMIT:  # a flood of made-up keys must not grow memory
                self._records.clear()
            self._records[digest] = self._store.lookup(key)
        record = self._records[digest]
        # Expiry is checked on every call, cached or not: a key stops working the moment it ends.
        return record.owner if record is not None and record.valid(time.time()) else None

    def _drop_cache_if_file_changed(self) -> None:
        try:
            info = os.stat(self._keys_file)
            stamp = (info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            self._records.clear()
            self._stamp = stamp
