"""The demo's workloads (``cumulus demo --workload NAME``): one narrow application each.

- ``bfcl``: tool calling on BFCL questions; the student copies live (the default);
- ``routing``: support messages to queues by an unstated policy; corrections make the student
  beat live;
- ``extraction``: order e-mails to JSON; the student matches live at a fraction of the cost;
- ``geography``: needs world knowledge the student lacks at the quick form's data size; nothing may
  pass shadow there (at ``--full`` size the student catches up and is promoted).
"""

from __future__ import annotations

from cumulus.errors import CumulusError
from ops.demo.workloads.base import Workload
from ops.demo.workloads.bfcl import BfclWorkload
from ops.demo.workloads.extraction import ExtractionWorkload
from ops.demo.workloads.geography import GeographyWorkload
from ops.demo.workloads.routing import RoutingWorkload

WORKLOADS: dict[str, type[Workload]] = {
    w.name: w for w in (BfclWorkload, RoutingWorkload, ExtractionWorkload, GeographyWorkload)
}


def workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]()
    except KeyError:
        raise CumulusError(
            f"unknown workload {name!r}", fix=f"--workload one of: {', '.join(WORKLOADS)}"
        ) from None
