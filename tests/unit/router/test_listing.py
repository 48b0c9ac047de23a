"""What `cumulus rollout list` shows: the router's description of its rollouts, rendered."""

from __future__ import annotations

import json

from cumulus.cli.main import build_parser
from cumulus.cli.rollout_cmds import ACTIONS, render
from services.router.__main__ import describe
from tests.unit.router.test_rollout import WORKFLOW, feed, started


def test_list_shows_state_weight_and_the_evidence_of_the_last_decision() -> None:
    router = started()
    feed(router, 50)
    rows = describe(router)
    json.dumps(rows)  # served as JSON by GET /api/v1/rollouts
    (row,) = rows
    assert (row["workflow"], row["state"], row["step"], row["weight"]) == (WORKFLOW, "canary", 1, 0.01)
    assert row["evidence"]["n"] == 50 and row["route_version"] == 2
    text = render(rows)
    assert WORKFLOW in text and "canary" in text and "1.0%" in text and "n=50" in text
    assert "(no rollout yet)" in render([])


def test_every_action_parses_with_its_workflow() -> None:
    parser = build_parser()
    for action in ACTIONS:
        args = parser.parse_args(["rollout", action, WORKFLOW, "--reason", "why"])
        assert (args.action, args.workflow, args.reason) == (action, WORKFLOW, "why")
