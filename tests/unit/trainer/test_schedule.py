"""The run's schedule from the dataset's size: epochs like OpenAI's n_epochs auto, ~auto_evals evaluations."""

from __future__ import annotations

from typing import Any

import pytest

from services.trainer.recipe_config import TrainSection, load_recipe_config
from services.trainer.schedule import Schedule, auto_every, plan


def _plan(examples: int, rows: int | None = None, **train: Any) -> Schedule:
    """A plan under the shipped lora.yaml's train section, with overrides."""
    section = TrainSection.model_validate({**load_recipe_config().train.model_dump(), **train})
    return plan(section, examples=examples, rows=rows or examples)


def test_the_shipped_recipe_sizes_itself_from_the_data() -> None:
    shipped = load_recipe_config().train
    assert (shipped.epochs, shipped.eval_every, shipped.checkpoint_every) == ("auto", "auto", "auto")


def test_a_200_row_and_a_5000_row_dataset_are_not_trained_alike() -> None:
    small, large = _plan(200), _plan(5000)
    # Both within [100, 25,000] examples seen at 3 epochs, so 3 epochs each; the steps and
    # the evaluation interval grow with the data, the number of evaluations does not.
    assert (small.epochs, small.total_steps, small.eval_every, small.examples_seen) == (3, 150, 15, 600)
    assert (large.epochs, large.total_steps, large.eval_every, large.examples_seen) == (3, 3750, 375, 15000)
    assert small.total_steps // small.eval_every == large.total_steps // large.eval_every == 10


@pytest.mark.parametrize(
    ("examples", "epochs"),
    [
        (20, 5),  # 3 epochs would see 60 < 100: 5 epochs see 100
        (30, 4),  # ceil(100 / 30): 120 seen (the cookbook's floor would stop at 90)
        (5, 10),  # 20 epochs to see 100, capped at max_auto_epochs
        (34, 3),  # 102 seen: the base is enough
        (8333, 3),  # 24,999 seen: still the base
        (8334, 2),  # 25,002 would be just over: floor(25,000 / 8,334)
        (10_000, 2),  # 30,000 would be over 25,000: 2 epochs see 20,000
        (30_000, 1),  # more than max_examples_seen in one epoch: one epoch all the same
    ],
)
def test_auto_epochs_keep_the_examples_seen_in_range(examples: int, epochs: int) -> None:
    assert _plan(examples).epochs == epochs


def test_auto_epochs_follow_the_configured_bounds() -> None:
    assert _plan(200, auto_base_epochs=1).epochs == 1
    assert _plan(200, min_examples_seen=1000).epochs == 5
    assert _plan(200, max_examples_seen=300).epochs == 1
    assert _plan(5, max_auto_epochs=25).epochs == 20


def test_steps_count_packed_rows_and_accumulation() -> None:
    # 200 examples packed 4 to a row: 50 rows, 13 micro-batches of 4, 7 steps of 2 micro-batches.
    schedule = _plan(200, rows=50, grad_accum=2)
    assert (schedule.epochs, schedule.total_steps, schedule.examples_seen) == (3, 21, 600)


@pytest.mark.parametrize("total_steps", [1, 7, 10, 11, 99, 150, 155, 3751])
@pytest.mark.parametrize("times", [1, 3, 10])
def test_auto_cadence_gives_about_auto_evals_evaluations(total_steps: int, times: int) -> None:
    every = auto_every(total_steps, times)
    at_steps = set(range(every, total_steps + 1, every)) | {total_steps}  # and one at the end
    assert len(at_steps) <= times
    if total_steps >= 10 * times:
        assert len(at_steps) >= times - 1


def test_max_steps_cuts_the_run_and_the_cadence_follows() -> None:
    schedule = _plan(5000, max_steps=100)
    assert (schedule.epochs, schedule.total_steps, schedule.eval_every) == (3, 100, 10)
    assert schedule.examples_seen == 400  # 100 steps of 4 one-example rows


def test_explicit_numbers_are_used_as_given() -> None:
    for examples in (200, 5000):
        schedule = _plan(examples, epochs=2, eval_every=25, checkpoint_every=0)
        assert (schedule.epochs, schedule.eval_every, schedule.checkpoint_every) == (2, 25, 0)
        assert schedule.total_steps == 2 * examples // 4


def test_the_metrics_are_the_resolved_numbers() -> None:
    assert _plan(200).metrics() == {
        "examples": 200,
        "epochs": 3,
        "total_steps": 150,
        "eval_every": 15,
        "checkpoint_every": 15,
        "examples_seen": 600,
    }
