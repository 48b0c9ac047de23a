"""Privacy (``privacy``): where captured text is redacted, by which detectors, and with which key.

``privacy.redact`` is each tenant's choice unless ``privacy.tenants.<tenant>.redact`` says otherwise:

- ``store`` (default): the collector redacts before rows reach ClickHouse, so ClickHouse and
  every dataset exported from it hold typed placeholders; Kafka holds the raw events until
  its retention;
- ``capture``: the gateway redacts before it publishes the event, so Kafka never holds the raw
  text either (the models still get the raw prompt: redaction is about what is kept);
- ``none``: an explicit opt-out, shown in `cumulus status`.

Detectors (cumulus/privacy/detectors.py) are all on by default; a tenant may turn built-in kinds
off (``disabled``) and add its own (``custom``: kind -> RE2 pattern). Placeholders are keyed by
``key_file`` (default <state_dir>/redaction-key, made on first use), which the gateway and the
collector must share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from cumulus.config.infrastructure import Section
from cumulus.privacy.detectors import detectors

RedactMode = Literal["none", "store", "capture"]
ErasurePolicy = Literal["retrain", "retire"]


class Retention(Section):
    """How long each store keeps what it holds (services/collector/retention.py)."""

    requests_days: int = Field(default=90, ge=1)
    """Captured requests (prompts and answers) and their rollups' source rows."""
    feedback_days: int = Field(default=365, ge=1)
    verdicts_days: int = Field(default=90, ge=1)
    audit_answers_days: int = Field(default=90, ge=1)
    drift_signals_days: int = Field(default=365, ge=1)
    datasets_days: int = Field(default=180, ge=1)
    """Exported datasets no adapter in use was trained on, in the artifact store."""
    retired_adapters_days: int = Field(default=90, ge=1)
    """Adapters rejected by their gate, failed or rolled back, in the artifact store (a rolled-back
    version cannot be served again with `rollback --to` once expired)."""

    def days(self, table: str) -> int | None:
        """The retention of a ClickHouse table, None for tables kept for good (adapters, rollouts)."""
        value = getattr(self, f"{table}_days", None)
        return int(value) if value is not None else None


class RedactionPolicy(Section):
    """One tenant's redaction; unset fields take ``privacy``'s."""

    redact: RedactMode | None = None
    disabled: list[str] | None = None
    """Built-in kinds not to look for (e.g. ``[IP]`` for a network-operations workflow)."""
    custom: dict[str, str] = Field(default_factory=dict)
    """The tenant's own kinds, added to ``privacy.custom``: UPPER_SNAKE name -> RE2 pattern."""
    on_erasure: ErasurePolicy | None = None
    retention_days: int | None = Field(default=None, ge=1)
    """This tenant's captured data (requests, feedback, verdicts, audit answers) is kept this long."""


class PrivacyConfig(Section):
    redact: RedactMode = "store"
    disabled: list[str] = Field(default_factory=list)
    custom: dict[str, str] = Field(default_factory=dict)
    tenants: dict[str, RedactionPolicy] = Field(default_factory=dict)
    key_file: Path | None = None
    """The placeholder key (32 random bytes, hex); default <state_dir>/redaction-key."""
    on_erasure: ErasurePolicy = "retrain"
    """An adapter trained on erased data: ``retrain`` (a new version without it rolls out over
    it through the usual gates) or ``retire`` (it stops serving at once; services/collector/lineage.py)."""
    erasure_training_wait_s: float = Field(default=900.0, ge=0)
    """An erasure waits this long for a training job on an affected dataset to end, so that its
    adapter is tainted with the others (the receipt says which it waited for)."""
    receipts_dir: Path | None = None
    """Where erasure receipts are kept (for good); default <state_dir>/receipts."""
    retention: Retention = Retention()

    def policies(self) -> dict[str, object]:
        """What `cumulus status` shows: the default and every tenant's own (opt-outs stand out)."""
        tenants = {
            name: {
                "redact": self.mode(name),
                "disabled": self.detector_settings(name)[0],
                "custom": sorted(self.detector_settings(name)[1]),
                "on_erasure": self.erasure_policy(name),
            }
            for name in sorted(self.tenants)
        }
        return {
            "redact": self.redact,
            "on_erasure": self.on_erasure,
            "retention_days": self.retention.model_dump(),
            "tenant_retention_days": {
                name: own.retention_days for name, own in sorted(self.tenants.items()) if own.retention_days
            },
            "disabled": self.disabled,
            "custom": sorted(self.custom),
            "tenants": tenants,
            "opted_out": sorted(n for n, t in tenants.items() if t["redact"] == "none")
            or (["every tenant (privacy.redact: none)"] if self.redact == "none" else []),
        }

    def erasure_policy(self, tenant: str) -> ErasurePolicy:
        own = self.tenants.get(tenant)
        return own.on_erasure if own is not None and own.on_erasure is not None else self.on_erasure

    def mode(self, tenant: str) -> RedactMode:
        own = self.tenants.get(tenant)
        return own.redact if own is not None and own.redact is not None else self.redact

    @property
    def captures_redacted(self) -> bool:
        """Whether any tenant's events are redacted by the gateway (``capture``)."""
        return self.redact == "capture" or any(t.redact == "capture" for t in self.tenants.values())

    def detector_settings(self, tenant: str) -> tuple[list[str], dict[str, str]]:
        """(kinds turned off, own kinds) for ``tenant``."""
        own = self.tenants.get(tenant)
        disabled = own.disabled if own is not None and own.disabled is not None else self.disabled
        return disabled, {**self.custom, **(own.custom if own is not None else {})}

    @model_validator(mode="after")
    def _detectors_build(self) -> PrivacyConfig:
        """A bad kind or pattern fails at start, naming the tenant, not at the first request."""
        for tenant in ["", *self.tenants]:
            try:
                detectors(*self.detector_settings(tenant))
            except ValueError as exc:
                where = f"privacy.tenants.{tenant}" if tenant else "privacy"
                raise ValueError(f"{where}: {exc}") from exc
        return self
