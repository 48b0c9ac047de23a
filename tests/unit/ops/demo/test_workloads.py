"""The demo's workloads: reproducible, valid gateway traffic, one workflow each, gold that checks."""

from __future__ import annotations

import itertools
import json

import pytest

from cumulus.config import load_config
from ops.demo.workloads import WORKLOADS, workload
from ops.demo.workloads.base import TextItem, reviewed
from ops.demo.workloads.extraction import ExtractionWorkload
from ops.demo.workloads.geography import GeographyWorkload
from ops.demo.workloads.routing import QUEUES, RoutingWorkload, queue_for
from services.gateway.validation import Limits, validate_generate
from services.gateway.workflows import resolve_chat

GENERATED = sorted(set(WORKLOADS) - {"bfcl"})


@pytest.mark.parametrize("name", GENERATED)
def test_items_are_reproducible_distinct_and_held_out_requests_are_new(name: str) -> None:
    capture, held = workload(name).items(200, 150)
    again, _ = workload(name).items(200, 150)
    assert [i.user for i in capture] == [i.user for i in again]
    assert len(capture) == 200 and len(held) == 150
    assert len({i.id for i in capture + held}) == 350
    assert not {i.user for i in capture} & {i.user for i in held}


@pytest.mark.parametrize("name", GENERATED)
def test_every_request_passes_gateway_validation_in_one_workflow(name: str) -> None:
    w = workload(name)
    limits = Limits.from_config(load_config(env={}))
    capture, held = w.items(100, 50)
    workflows = set()
    for item in capture + held:
        request = w.request(item, f"r-{item.id}")
        validate_generate(request, limits)
        chat = [(m.role, m.content) for m in request.messages]
        workflows.add(resolve_chat("demo", "", chat, [t.name for t in request.tools]).name)
    assert len(workflows) == 1


@pytest.mark.parametrize("name", GENERATED)
def test_the_gold_answer_is_right_and_another_items_answer_is_not(name: str) -> None:
    w = workload(name)
    capture, _ = w.items(60, 0)
    for item in capture:
        assert w.correct(item, w.correction(item)), item
    wrong = sum(w.correct(a, b.gold) for a, b in itertools.pairwise(capture))
    assert wrong < len(capture) // 2  # labels repeat; whole answers rarely


def test_reviewers_confirm_right_answers_and_correct_wrong_ones() -> None:
    w = RoutingWorkload()
    item = TextItem("x", "My Atlas thermostat will not power on.", "atlas-hw")
    ids = [f"req-{n}" for n in range(2000)]
    picked = [i for i in ids if reviewed(i, w.feedback_share)]
    assert abs(len(picked) / len(ids) - w.feedback_share) < 0.05
    assert reviewed(picked[0], w.feedback_share)  # the same id, the same choice
    right, wrong = w.feedback(item, picked[0], "atlas-hw"), w.feedback(item, picked[0], "aurora-hw")
    assert right is not None and right.score == 1.0 and not right.correction
    assert wrong is not None and wrong.correction == "atlas-hw" and not wrong.HasField("score")
    unreviewed = next(i for i in ids if not reviewed(i, w.feedback_share))
    assert w.feedback(item, unreviewed, "aurora-hw") is None


def test_routing_policy_uses_every_queue_and_is_not_in_the_prompt() -> None:
    capture, held = RoutingWorkload().items(200, 150)
    assert {i.gold for i in capture} == set(QUEUES)
    assert (
        queue_for("atlas", "setup") == "install-partners" and queue_for("vega", "billing") == "subscriptions"
    )
    assert "partner" not in RoutingWorkload.system_prompt.split("Queues:")[0]
    assert RoutingWorkload().correct(held[0], f"{held[0].gold.upper()}.")


def test_extraction_gold_reads_json_as_a_reader_would() -> None:
    w = ExtractionWorkload()
    (item,), _ = w.items(1, 0)
    gold = json.loads(item.gold)
    loose = {**gold, "quantity": str(gold["quantity"]), "customer": gold["customer"].upper()}
    assert w.correct(item, "```json\n" + json.dumps(loose) + "\n```")
    assert not w.correct(item, json.dumps({**gold, "quantity": gold["quantity"] + 1}))
    assert not w.correct(item, json.dumps({k: v for k, v in gold.items() if k != "city"}))


def test_geography_draws_many_countries_and_accepts_any_case() -> None:
    capture, _ = GeographyWorkload().items(200, 0)
    assert len({i.gold for i in capture}) > 40
    item = capture[0]
    assert GeographyWorkload().correct(item, f" {item.gold.lower()}.\n")
    assert not GeographyWorkload().correct(item, "Atlantis")
