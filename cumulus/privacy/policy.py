"""Each tenant's redaction as configured (``privacy``, cumulus/config/privacy.py), with the key.

Two stages may redact an event: the gateway before it publishes (``capture``: only tenants whose
mode is ``capture``) and the collector before it stores (``store``: every tenant but those that
opted out with ``none``; an event the gateway already redacted holds only placeholders, which
redacting again leaves as they are).
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Literal

from google.protobuf.message import Message

from cumulus.config.privacy import PrivacyConfig, RedactMode
from cumulus.errors import ConfigError
from cumulus.privacy.detectors import detectors
from cumulus.privacy.events import redact_event
from cumulus.privacy.redactor import Redactor

Stage = Literal["capture", "store"]


def load_key(path: Path) -> bytes:
    """The placeholder key in ``path``, made there (owner-only) if there is none yet.

    Made with a hard link from a private temporary file, so that two services starting at once
    end up with the same key: the second link fails and that service reads the first's."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError as exc:
        raise ConfigError(
            f"{path} does not hold a hex redaction key",
            fix="remove it to have a new one made (placeholders made with the old key stop matching)",
        ) from exc
    if len(key) < 16:
        raise ConfigError(f"{path}: the redaction key is under 16 bytes", fix="use 32 random bytes, hex")
    return key


class TenantPrivacy:
    """Who is redacted where, and with which detectors (see the module docstring)."""

    def __init__(self, config: PrivacyConfig, key: bytes) -> None:
        self.config = config
        self.key = key
        self._redactors: dict[str, Redactor] = {}

    def mode(self, tenant: str) -> RedactMode:
        return self.config.mode(tenant)

    def redactor(self, tenant: str) -> Redactor:
        """The tenant's own redactor if it has settings of its own, else the shared default one."""
        policy = tenant if tenant in self.config.tenants else ""
        redactor = self._redactors.get(policy)
        if redactor is None:
            redactor = Redactor(self.key, detectors(*self.config.detector_settings(policy)))
            self._redactors[policy] = redactor
        return redactor

    def redact(self, event: Message, stage: Stage) -> Counter[str] | None:
        """Redact ``event`` in place if its tenant's mode says so at ``stage``; the counts, or None
        when it is left as it is."""
        tenant = getattr(getattr(event, "meta", None), "tenant", "")
        if not self.redacts(tenant, stage):
            return None
        return redact_event(event, self.redactor(tenant), self.key)

    def redacts(self, tenant: str, stage: Stage) -> bool:
        """Whether ``stage`` redacts ``tenant``'s events (see the module docstring)."""
        mode = self.mode(tenant)
        return mode == "capture" if stage == "capture" else mode != "none"
