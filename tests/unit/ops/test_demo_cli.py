"""`cumulus demo --workload`: names, lists and `all`, checked before any stack starts."""

from __future__ import annotations

import pytest

from cumulus.errors import CumulusError
from ops.cli.demo_cmds import _workloads
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
