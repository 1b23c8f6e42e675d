"""Exponential moving average target networks and their momentum schedules."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_at(step: int, total_steps: int, start: float, end: float, schedule: str) -> float:
    """Target momentum at `step` of `total_steps`.

    `cosine` (BYOL): `end - (end - start) * (cos(pi * t) + 1) / 2`; `linear` (I-JEPA, T-JEPA):
    `start + (end - start) * t`; `constant`: `start`. `t = step / total_steps` clipped to [0, 1].
    """
    t = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if schedule == "cosine":
        return end - (end - start) * (math.cos(math.pi * t) + 1) / 2
    if schedule == "linear":
        return start + (end - start) * t
    if schedule == "constant":
        return start
    raise ValueError(f"ema.schedule: unknown schedule '{schedule}'; use cosine, linear or constant")


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """`target <- momentum * target + (1 - momentum) * online`, parameters and float buffers.

    Integer buffers (BatchNorm's `num_batches_tracked`) are copied.
    """
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)
    for t_buf, o_buf in zip(target.buffers(), online.buffers(), strict=True):
        if t_buf.is_floating_point():
            t_buf.lerp_(o_buf, 1.0 - momentum)
        else:
            t_buf.copy_(o_buf)


def make_target(online: nn.Module) -> nn.Module:
    """A frozen deep copy of `online` (no parameter ever requires grad)."""
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    return target
