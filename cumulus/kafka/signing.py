"""Signed operator commands: a record on ``cumulus.commands.v1`` counts only with a valid signature.

Anyone who can write to Kafka could otherwise promote or roll back any tenant's rollout. The CLI
signs each command with HMAC-SHA256 under a shared secret, the *command key*, and puts the
signature in the record header ``cumulus-signature``; the router recomputes it and dead-letters
an unsigned or forged command without acting on it. The signature covers the record key (tenant
and workflow) and the whole serialized command, so neither can be changed or swapped.

The key is 32 random bytes, hex, in ``router.command_key_file`` (default
``<state_dir>/command-key``, 0600), created on first use by whichever of the router and the CLI
comes first; in docker-compose it is a secret mounted into both. Whoever can read it can command
rollouts: it is an operator credential.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from pathlib import Path

from cumulus.apikeys import write_private
from cumulus.errors import ConfigError

HEADER = "cumulus-signature"
_NEW_KEY = "delete the key file to have a new one made (and give it to the router and the CLI)"


class CommandSigner:
    """Signs and verifies command records under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ConfigError("the command key is shorter than 16 bytes", fix=_NEW_KEY)
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> CommandSigner:
        """The signer of the key in ``path``, making a new key there when there is none."""
        if not path.exists():
            write_private(path, secrets.token_hex(32) + "\n")
        try:
            return cls(bytes.fromhex(path.read_text().strip()))
        except ValueError as exc:
            raise ConfigError(f"{path} does not hold a hex command key", fix=_NEW_KEY) from exc

    def sign(self, key: bytes | None, value: bytes) -> bytes:
        """The signature of a record (its key and value), as the header's value."""
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        mac.update(len(key or b"").to_bytes(4, "big") + (key or b""))
        mac.update(value)
        return mac.hexdigest().encode()

    def problem(
        self, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] | None
    ) -> str | None:
        """None when the record is signed by this key, else why it is refused."""
        signatures = [v for name, v in headers or () if name == HEADER]
        if not signatures:
            return f"unsigned command: no {HEADER} header (commands are sent by `cumulus rollout`)"
        if len(signatures) > 1 or not hmac.compare_digest(signatures[0], self.sign(key, value)):
            return "forged command: its signature does not match the command key"
        return None
