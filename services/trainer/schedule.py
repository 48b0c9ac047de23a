"""How long a run trains and how often it looks at the holdout set, sized from the dataset.

A recipe's ``train.epochs``, ``train.eval_every`` and ``train.checkpoint_every`` may be ``auto``,
so one shipped recipe trains a 200-example dataset and a 5,000-example one sensibly: epochs from
the number of training examples, evaluations and checkpoints as a share of the run's steps (a
fixed 25 gave the large set 150 holdout evaluations and the small one a handful). ``plan`` is a
pure function of the config and the dataset's size, so a resumed run gets the same schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from services.trainer.recipe_config import TrainSection


@dataclass(frozen=True)
class Schedule:
    """What a run will do, every ``auto`` resolved; the recipe logs it (``train.schedule``) at setup."""

    examples: int
    """Training examples (after too-long ones were skipped)."""
    epochs: int
    total_steps: int
    """Optimizer steps: the epochs' steps, or train.max_steps when that is fewer."""
    eval_every: int
    """Steps between holdout evaluations; 0: never."""
    checkpoint_every: int
    """Steps between checkpoints; 0: only when interrupted."""
    examples_seen: int
    """Examples the run trains on, counting each epoch's pass (fewer where max_steps cuts it short)."""

    def metrics(self) -> dict[str, int]:
        """The numbers under the field names above, for a job's metrics."""
        return asdict(self)


def auto_epochs(examples: int, train: TrainSection) -> int:
    """Epochs for ``examples`` training examples: train.auto_base_epochs unless that sees too few or too many.

    The rule of OpenAI's fine-tuning API (``n_epochs: auto``), as its cookbook spells it out
    (openai/openai-cookbook, examples/Chat_finetuning_data_prep.ipynb, "default n_epochs
    estimate"): 3 epochs, more when that is under 100 examples seen, fewer when over 25,000.
    One difference: it rounds up at the low end, so a small set reaches min_examples_seen
    (the cookbook's floor gives 30 examples 3 epochs: 90 seen).
    """
    epochs = train.auto_base_epochs
    if examples * epochs < train.min_examples_seen:
        epochs = math.ceil(train.min_examples_seen / examples)
    elif examples * epochs > train.max_examples_seen:
        epochs = train.max_examples_seen // examples
    return min(max(epochs, 1), train.max_auto_epochs)


def auto_every(total_steps: int, times: int) -> int:
    """A step interval giving at most ``times`` events over ``total_steps``, the last one included.

    Rounding the interval up keeps the count at or under ``times`` even with the extra evaluation
    ``LoraRecipe.train`` makes at the end; on a run of many more steps than that it is ~``times``.
    """
    return max(1, math.ceil(total_steps / times))


def plan(train: TrainSection, *, examples: int, rows: int) -> Schedule:
    """The schedule for ``examples`` training examples packed into ``rows`` rows (one at least)."""
    steps_per_epoch = math.ceil(math.ceil(rows / train.batch_size) / train.grad_accum)
    epochs = train.epochs if isinstance(train.epochs, int) else auto_epochs(examples, train)
    total_steps = min(train.max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
    cadence = auto_every(total_steps, train.auto_evals)
    return Schedule(
        examples=examples,
        epochs=epochs,
        total_steps=total_steps,
        eval_every=train.eval_every if isinstance(train.eval_every, int) else cadence,
        checkpoint_every=train.checkpoint_every if isinstance(train.checkpoint_every, int) else cadence,
        examples_seen=round(examples * total_steps / steps_per_epoch),
    )
