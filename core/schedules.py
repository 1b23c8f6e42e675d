"""Per-step schedules for learning rate and weight decay."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start: float, peak: float,
                  end: float) -> float:
    """Linear warmup from `start` to `peak` over `warmup_steps`, then cosine decay to `end`."""
    if step < warmup_steps:
        return start + (peak - start) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    t = min((step - warmup_steps) / decay_steps, 1.0)
    return end + (peak - end) * (1 + math.cos(math.pi * t)) / 2


def cosine(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine from `start` at step 0 to `end` at `total_steps` (weight-decay schedule)."""
    t = min(step / max(total_steps, 1), 1.0)
    return end + (start - end) * (1 + math.cos(math.pi * t)) / 2
