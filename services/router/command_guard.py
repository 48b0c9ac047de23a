"""What an operator command must show before the router acts on it.

A signature (cumulus/kafka/signing.py) proves the command was made by someone holding the command
key, but not who, nor when: a signed record copied off the topic could be written again later. So
a command also counts only when

- it is **fresh**: ``meta.published_at`` lies within ``router.command_max_age_s`` before now (and
  not more than :data:`CLOCK_SKEW_S` after), so an old command cannot be replayed later;
- it is **new**: its event id was not acted on within that window, so it cannot be replayed soon;
- its **operator** is a valid operator token (scope operator or admin) whose id the command names
  and whose name is the command's ``operator``: a revoked or expired token stops commanding at
  once, and the rollout history names a real person's token, not a self-asserted name.

A command refused for any of these is dead-lettered with the reason and changes nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from cumulus.operators import SCOPES, token_by_id
from cumulus.v1 import events_pb2

CLOCK_SKEW_S = 60.0
_NEEDED_SCOPE = "operator"


class CommandGuard:
    """Freshness, replay and operator checks of signed commands (see the module docstring)."""

    def __init__(self, state_dir: Path, max_age_s: float, clock: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.max_age_s = max_age_s
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # event id -> published_at, oldest first

    def refuse(self, command: events_pb2.RolloutCommand) -> str | None:
        """None when the router may act on ``command`` (and it is remembered), else why not."""
        now = self.clock()
        self._forget_before(now - self.max_age_s)
        sent = (
            command.meta.published_at.ToMicroseconds() / 1e6 if command.meta.HasField("published_at") else 0.0
        )
        if sent <= 0:
            return "stale command: it carries no published_at (commands are sent by `cumulus rollout`)"
        if sent < now - self.max_age_s:
            age = now - sent
            return f"stale command: sent {age:.0f} s ago, over router.command_max_age_s={self.max_age_s:g}"
        if sent > now + CLOCK_SKEW_S:
            return (
                f"stale command: sent {sent - now:.0f} s in the future (clock skew over {CLOCK_SKEW_S:g} s)"
            )
        event_id = command.meta.event_id
        if not event_id:
            return "replayed command: it carries no event id"
        if event_id in self._seen:
            return f"replayed command: event {event_id} was acted on already"
        identity = (
            token_by_id(self.state_dir, command.operator_token_id) if command.operator_token_id else None
        )
        if identity is None:
            return (
                f"unknown operator: token id {command.operator_token_id or '(none)'} is not a valid operator "
                "token (revoked, expired or never issued; see `cumulus keys list`)"
            )
        scope, name = identity
        if SCOPES.index(scope) < SCOPES.index(_NEEDED_SCOPE):
            return f"operator {name!r} holds a {scope!r} token; commands need scope operator or admin"
        if name != command.operator:
            return f"operator mismatch: the command says {command.operator!r}, its token belongs to {name!r}"
        self._seen[event_id] = sent
        return None

    def _forget_before(self, horizon: float) -> None:
        # Ids older than the window cannot come back (they are refused as stale), so the memory is
        # bounded by the commands of one window.
        while self._seen:
            oldest_id, sent = next(iter(self._seen.items()))
            if sent >= horizon:
                break
            del self._seen[oldest_id]
