"""The states of a rollout: one contract for every service that reads them.

The router moves a rollout through them and names the state on every RolloutEvent and
RouteTable (``to_state``, ``rollout_state``); the gateway, the collector and the CLI read those
names back. Defining them once keeps the readers from drifting apart from the writer.
"""

from __future__ import annotations

SHADOW, CANARY, PROMOTED, ROLLED_BACK, PAUSED = "shadow", "canary", "promoted", "rolled_back", "paused"
ACTIVE = (SHADOW, CANARY, PAUSED)
"""States in which a rollout still holds its workflow (a new adapter waits for it to finish)."""
GRADED = (SHADOW, CANARY, PROMOTED)
"""States whose verdicts count: the steps of a rollout, and a promoted adapter's audit."""
WATCHED = (*ACTIVE, PROMOTED)
"""States whose route table the router keeps re-publishing, so gateways can see it is alive."""
