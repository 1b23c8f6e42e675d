"""A-JEPA's maskers on a frequency-major spectrogram patch grid `(F', T')`.

`time_frequency`: every target is a time stripe (all frequencies over a few frames) or a frequency
band (a few mel rows over all frames); the context is everything the targets leave.
`curriculum`: per batch, I-JEPA's random block masking or time-frequency masking, the latter with
a probability rising over training (Fei et al., A-JEPA, "curriculum masking").
"""

from __future__ import annotations

import math

import torch

from polyjepa import masks
from polyjepa.maskers import MultiBlockMasker
from polyjepa.types import Masks


class TimeFrequencyMasker:
    """Targets are `num_targets` time stripes or frequency bands (one kind per batch, drawn with
    equal odds), each covering a share of the grid drawn from `target_scale`; the context is all
    uncovered patches (subsampled to the fewest over the batch).

    Args:
        grid: `(F', T')` patch grid (from the tokenizer).
        num_targets: stripes per sample (A-JEPA's hard mode: 3).
        target_scale: `(low, high)` share of the grid per stripe (0.05-0.075); a stripe is at
            least one row or column wide.
        min_keep: smallest acceptable context.
    """

    kind = "masker"

    def __init__(self, grid: tuple[int, int], num_targets: int = 3,
                 target_scale: tuple[float, float] = (0.05, 0.075), min_keep: int = 4) -> None:
        if len(grid) != 2 or min(grid) < 2:
            raise ValueError(f"time_frequency masking needs a 2D patch grid with >= 2 rows and "
                             f"columns, got {tuple(grid)}")
        low, high = target_scale
        if not 0 < low <= high < 1:
            raise ValueError(f"target_scale must satisfy 0 < low <= high < 1, got {target_scale}")
        rows, cols = grid
        self.grid, self.num_targets = (rows, cols), num_targets
        self.target_scale, self.min_keep = (low, high), min_keep

    def __call__(self, batch_size: int, generator: torch.Generator) -> Masks:
        axis = int(torch.randint(0, 2, (), generator=generator))  # 0: frequency band, 1: time
        low, high = self.target_scale
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        side = self.grid[axis]
        width = min(max(round(scale * side), 1), side - 1)
        target = masks.stripes(batch_size, self.grid, axis, width, self.num_targets, generator)
        return masks.context_outside(target, math.prod(self.grid), generator, self.min_keep)


def curriculum_probability(position: int, total: int, c0: float) -> float:
    """Share of time-frequency masking after `position` of `total` batches: the square-root
    competence schedule `min(1, sqrt(s (1 - c0^2) / S + c0^2))` (Platanios et al. 2019, as cited
    by A-JEPA; it starts at `c0` and reaches 1 at the end)."""
    return min(1.0, math.sqrt(position * (1 - c0**2) / max(total, 1) + c0**2))


class CurriculumMasker:
    """A-JEPA's curriculum: random block masking (I-JEPA multi-block) early, time-frequency-aware
    masking increasingly often, chosen per batch with `curriculum_probability`.

    Args:
        grid: `(F', T')` patch grid (from the tokenizer).
        total_batches: micro-batches in the run (from the trainer).
        c0: initial share of time-frequency masking (0.01).
        block: options of the `multiblock` masker (I-JEPA's defaults when empty).
        time_frequency: options of the `audio.time_frequency` masker.
    """

    kind = "masker"
    progressive = True  # called with the batch position

    def __init__(self, grid: tuple[int, int], total_batches: int, c0: float = 0.01,
                 block: dict | None = None, time_frequency: dict | None = None) -> None:
        if not 0 <= c0 <= 1:
            raise ValueError(f"c0 must lie in [0, 1], got {c0}")
        self.total_batches, self.c0 = total_batches, c0
        self.block = MultiBlockMasker(tuple(grid), **(block or {}))
        self.time_frequency = TimeFrequencyMasker(grid, **(time_frequency or {}))

    def __call__(self, batch_size: int, generator: torch.Generator, position: int) -> Masks:
        p = curriculum_probability(position, self.total_batches, self.c0)
        hard = float(torch.rand((), generator=generator)) < p
        return (self.time_frequency if hard else self.block)(batch_size, generator)
