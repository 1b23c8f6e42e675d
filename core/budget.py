"""How long a run trains: `train.max_steps`, or epochs of the data between a floor and a ceiling.

A recipe that fixes its steps trains a 569-row table as long as a 30,000-row one; one that gives
`train.max_epochs` trains `max_epochs` passes over its training split, never fewer than
`train.min_steps` optimizer steps (tiny data still trains) nor more than `train.max_steps` (large
data stays bounded). Warm-up shrinks with the run, so it stays the same share of it; every other
schedule (learning rate, weight decay, EMA momentum, masking curricula) spans the resolved steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from polyjepa.config import TrainConfig


@dataclass(frozen=True)
class Budget:
    """A run's resolved length.

    Attributes:
        steps: optimizer steps the run takes.
        batches_per_epoch: micro-batches of one pass over the training split, per process.
        accumulate: micro-batches per optimizer step.
        warmup_steps: `optim.warmup_steps`, shrunk in proportion when the run is shorter than
            `train.max_steps`.
        rule: how `steps` was chosen, in words (for the run's first lines and `run.json`).
    """

    steps: int
    batches_per_epoch: int
    accumulate: int
    warmup_steps: int
    rule: str

    @property
    def epochs(self) -> float:
        """Passes over the training split the run makes."""
        return self.steps * self.accumulate / self.batches_per_epoch

    def describe(self, samples: int, batch_size: int) -> str:
        """`2,000 steps = 45.5 epochs of 1,406 training samples at batch 32 (rule)`."""
        return (f"{self.steps:,} steps = {self.epochs:.1f} epochs of {samples:,} training "
                f"samples at batch {batch_size} ({self.rule})")


def resolve_budget(train: TrainConfig, warmup_steps: int, num_samples: int, batch_size: int,
                   world_size: int = 1) -> Budget:
    """The run's length for `num_samples` training samples in batches of `batch_size` per process.

    Without `train.max_epochs`: `train.max_steps`. With it: `ceil(max_epochs x steps per epoch)`,
    clamped to `[train.min_steps, train.max_steps]`.
    """
    per_epoch = max(1, (num_samples // world_size) // batch_size)  # the sampler drops the rest
    if train.max_epochs is None:
        steps, rule = train.max_steps, "train.max_steps"
    else:
        wanted = math.ceil(train.max_epochs * per_epoch / train.accumulate)
        steps = min(max(wanted, train.min_steps), train.max_steps)
        bound = ("" if steps == wanted else
                 f", raised to train.min_steps={train.min_steps}" if steps > wanted else
                 f", capped at train.max_steps={train.max_steps}")
        rule = f"train.max_epochs={train.max_epochs:g}{bound}"
    warmup = warmup_steps if steps >= train.max_steps else round(
        warmup_steps * steps / train.max_steps)
    return Budget(steps, per_epoch, train.accumulate, min(warmup, steps), rule)
