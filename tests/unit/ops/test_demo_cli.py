"""`cumulus demo --workload`: names, lists and `all`, checked before any stack starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cumulus.config import CumulusConfig
from cumulus.errors import CumulusError
from ops.cli.demo_cmds import _workloads, cmd_demo
from ops.demo.workloads import WORKLOADS


def test_workload_lists_and_all() -> None:
    assert [w.name for w in _workloads("bfcl")] == ["bfcl"]
    assert [w.name for w in _workloads("routing, geography")] == ["routing", "geography"]
    assert [w.name for w in _workloads("all")] == sorted(WORKLOADS)


@pytest.mark.parametrize("spec", ["", " , ", "routnig"])
def test_a_bad_workload_names_the_choices(spec: str) -> None:
    with pytest.raises(CumulusError) as error:
        _workloads(spec)
    assert "bfcl" in str(error.value.fix)


def test_drift_without_the_bfcl_workload_is_refused_before_any_stack_starts(tmp_path: Path) -> None:
    config = CumulusConfig(state_dir=tmp_path)
    args = argparse.Namespace(profile="quick", workload="routing", drift=True)
    with pytest.raises(CumulusError) as error:
        cmd_demo(args, config)
    assert "--drift" in error.value.message and error.value.fix == "add --workload bfcl"
    assert not (tmp_path / "logs").exists()  # nothing was started
