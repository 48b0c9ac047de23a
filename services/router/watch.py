"""What the router does on the clock rather than on an event: starvation and the tables' heartbeat.

An idle topic hands the handler no batch, yet silence is itself a signal. Every second the
router's watch (RouterHandler.watch) asks:

- ``silent``: which rollouts in shadow or canary have had no verdict for
  ``router.verdict_hold_after_s``? Each holds its step and says why (its evidence so far is
  dropped, so it never advances later on evidence from before the gap); with
  ``router.verdict_rollback_after_s`` set, one silent that long rolls back to its incumbent.
- ``heartbeat`` (every ``router.heartbeat_s``): the route table of every rollout in progress or
  promoted again, same version, freshly stamped. Gateways treat a table as vouched for while
  these keep coming; when they stop (the router is down) the table goes stale there
  (``gateway.route_max_age_s``, services/gateway/routes.py).
"""

from __future__ import annotations

import time

from cumulus.kafka import codec, topics
from cumulus.logs import get_logger
from cumulus.rollout_states import CANARY, SHADOW, WATCHED
from cumulus.v1 import events_pb2
from services.router.core import PRODUCER, Output, Router

log = get_logger("router")


def silent(router: Router, now_ns: int | None = None) -> list[Output]:
    """Hold, or roll back, the rollouts that verdicts stopped reaching (see the module docstring)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    hold_s, rollback_s = router.config.verdict_hold_after_s, router.config.verdict_rollback_after_s
    outputs: list[Output] = []
    for rollout in router.rollouts.values():
        if rollout.state not in (SHADOW, CANARY):
            continue
        silent_s = (now_ns - rollout.last_verdict_ns) / 1e9
        if rollback_s is not None and silent_s >= rollback_s:
            reason = f"no verdict for {silent_s:.0f} s (router.verdict_rollback_after_s {rollback_s:g})"
            outputs += router.roll_back(rollout, reason, {"silent_s": round(silent_s, 1)})
        elif silent_s >= hold_s and not rollout.held:
            since = time.strftime("%H:%M:%S", time.gmtime(rollout.last_verdict_ns / 1e9))
            rollout.hold(
                f"held: no verdict since {since} UTC (router.verdict_hold_after_s {hold_s:g}); "
                "the step restarts on fresh verdicts",
                now_ns,
            )
            log.warning(
                "rollout.held", **rollout.log_fields(), step=rollout.step, silent_s=round(silent_s, 1)
            )
    return outputs


def heartbeat(router: Router) -> list[Output]:
    """The route table of every rollout in progress or promoted again (see the module docstring)."""
    outputs: list[Output] = []
    for key, rollout in router.rollouts.items():
        table = router.tables.get(key)
        if rollout.state not in WATCHED or table is None:
            continue
        again = events_pb2.RouteTable()
        again.CopyFrom(table)
        again.meta.CopyFrom(codec.new_meta(tenant=key.tenant, workflow=key.workflow, producer=PRODUCER))
        outputs.append(Output(topics.ROUTES, again))
    return outputs
