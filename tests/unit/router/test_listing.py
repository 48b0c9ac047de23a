"""What `cumulus rollout list` shows: the router's description of its rollouts, rendered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cumulus.errors import InvalidArgument, NotFound
from ops.cli.main import build_parser
from ops.cli.rollout_cmds import ACTIONS, render, tenant_of
from services.router.listing import describe
from tests.unit.router.test_rollout import TENANT, WORKFLOW, feed, started


def test_list_shows_state_weight_and_the_evidence_of_the_last_decision() -> None:
    router = started()
    feed(router, 50)
    rows = describe(router)
    json.dumps(rows)  # served as JSON by GET /api/v1/rollouts
    (row,) = rows
    assert (row["tenant"], row["workflow"], row["state"], row["step"], row["weight"]) == (
        TENANT,
        WORKFLOW,
        "canary",
        1,
        0.01,
    )
    assert row["evidence"]["n"] == 50 and row["route_version"] == 2
    header, line = render(rows).splitlines()
    assert header.split()[:2] == ["tenant", "workflow"] and line.split()[:2] == [TENANT, WORKFLOW]
    assert "canary" in line and "1.0%" in line and "n=50" in line
    assert "(no rollout yet)" in render([])


def test_every_action_parses_with_its_workflow_and_tenant() -> None:
    parser = build_parser()
    for action in ACTIONS:
        args = parser.parse_args(["rollout", action, WORKFLOW, "--reason", "why"])
        assert (args.action, args.workflow, args.tenant, args.reason) == (action, WORKFLOW, "", "why")
        args = parser.parse_args(["rollout", action, WORKFLOW, "--tenant", TENANT])
        assert (args.workflow, args.tenant) == (WORKFLOW, TENANT)


def _rows(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"tenant": tenant, "workflow": workflow} for tenant, workflow in pairs]


def test_an_action_without_tenant_takes_the_only_tenant_with_that_workflow() -> None:
    rows = _rows(("acme", WORKFLOW), ("globex", "invoices"), ("acme", "invoices"))
    assert tenant_of(WORKFLOW, rows) == "acme"


def test_an_action_without_tenant_refuses_to_guess_between_tenants() -> None:
    rows = _rows(("globex", WORKFLOW), ("acme", WORKFLOW))
    with pytest.raises(InvalidArgument, match=r"--tenant: tenants 'acme', 'globex' .*--tenant acme"):
        tenant_of(WORKFLOW, rows)


def test_an_action_on_a_workflow_without_rollout_names_the_fix() -> None:
    with pytest.raises(NotFound, match=r"no rollout of workflow 'tickets'.*cumulus rollout list"):
        tenant_of(WORKFLOW, _rows(("acme", "invoices")))


def test_list_shows_candidate_and_live_gold_accuracy_with_intervals() -> None:
    from tests.unit.router.test_gold_gate import gold_started, gold_verdict

    router = gold_started()
    for i in range(10):
        router.on_verdict(gold_verdict(i, candidate=i < 8, live=i < 2))
    (row,) = describe(router)
    json.dumps(row)
    gold = row["gold"]
    assert (
        row["step_gold"] == 10
        and gold["candidate_gold_accuracy"] == 0.8
        and gold["live_gold_accuracy"] == 0.2
    )
    assert gold["candidate_gold_low"] < 0.8 < gold["candidate_gold_high"]
    line = render([row]).splitlines()[1]
    assert "gold: candidate 0.80 [" in line and "vs live 0.20 [" in line and "n=10" in line
