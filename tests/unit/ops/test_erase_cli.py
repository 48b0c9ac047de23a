"""`cumulus erase` refuses an empty or mixed selector before calling anything; `cumulus status`
names where text is redacted and who opted out."""

from __future__ import annotations

import argparse

import pytest

from cumulus.config import CumulusConfig, PrivacyConfig
from cumulus.errors import InvalidArgument
from ops.cli.erase_cmds import cmd_erase, summary
from ops.cli.stack_cmds import privacy_line


@pytest.mark.parametrize(
    "selector", [{}, {"all": True, "user": ["u-1"]}], ids=["nothing named", "all with others"]
)
def test_a_bad_selector_names_the_fix(selector: dict[str, object]) -> None:
    args = argparse.Namespace(tenant="acme", request=[], session=[], user=[], all=False, json=False)
    for name, value in selector.items():
        setattr(args, name, value)
    with pytest.raises(InvalidArgument) as error:
        cmd_erase(args, CumulusConfig())
    assert error.value.field == "selector" and "cumulus erase --tenant acme --user" in (error.value.fix or "")


def test_status_shows_each_tenants_redaction_and_the_opt_outs() -> None:
    tenants = {"acme": {"redact": "capture"}, "lab": {"redact": "none", "retention_days": 7}}
    line = privacy_line(PrivacyConfig(tenants=tenants).policies())  # type: ignore[arg-type]
    assert line == (
        "privacy    redact=store (tenants: acme=capture, lab=none), on_erasure=retrain, "
        "kept: requests 90d, datasets 180d (lab=7d); NOT REDACTED: lab"
    )


def test_the_receipt_summary_says_what_was_removed_where() -> None:
    receipt: dict[str, object] = {
        "erasure_id": "er-1", "tenant": "acme", "requests_found": 2, "note": "",
        "clickhouse": {"requests": {"removed": 2, "remaining": 0}, "feedback": {"removed": 0}},
        "datasets": [{"workflow": "wf", "dataset_id": "ds-1", "removed": 2}],
        "adapters": [{"adapter_id": "ad-1", "tainted_by": "dataset ds-1", "action": "retire: rolled back"}],
        "retired": ["wf: rolled back ad-1"],
        "kafka": {"raw_events_remain_until": {"cumulus.inference.v1": "2026-12-14T00:00:00+00:00"}},
    }  # fmt: skip
    text = summary(receipt)
    assert "clickhouse requests: 2 rows removed" in text and "feedback" not in text
    assert "dataset wf/ds-1: 2 removed" in text and "adapter ad-1 (dataset ds-1)" in text
    assert "wf: rolled back ad-1" in text and "2026-12-14" in text
