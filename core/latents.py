"""Inference of a continuous latent variable by energy minimisation (VJ-VCR's sparse latent).

A predictor `Pred(h_x, z)` with a continuous `z` can copy the target into `z` unless `z` is kept
poor in information. Here `z` is inferred per sample as

    z* = argmin_z  E(z) + λ ||z||_1,   E(z) = mean (Pred(h_x, z) - h_y)^2,

by FISTA (Beck & Teboulle 2009): proximal gradient steps on `E` with soft thresholding for the
L1 term and Nesterov momentum, a fixed step size and number of steps, from `z = 0` (the prior).
The L1 penalty sets most coordinates of `z*` exactly to zero; a larger `λ` leaves fewer non-zeros
and less of the target in `z`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def soft_threshold(z: Tensor, threshold: float) -> Tensor:
    """The proximal operator of `threshold * ||z||_1`: shrink every coordinate towards 0."""
    return torch.sign(z) * (z.abs() - threshold).clamp_min(0)


def fista(energy: Callable[[Tensor], Tensor], z0: Tensor, l1: float, steps: int,
          step_size: float) -> Tensor:
    """`argmin_z energy(z) + l1 ||z||_1` by `steps` FISTA iterations from `z0`.

    Args:
        energy: `z [B, Z] -> [B]` per-sample smooth energy (its gradient with respect to `z` only
            is taken; parameters it closes over get none).
        z0: starting point `[B, Z]`.
        l1: the L1 weight λ.
        steps: iterations.
        step_size: gradient step (at most 1/L for an L-smooth energy to converge).

    Returns:
        `z*` `[B, Z]`, detached.
    """
    z_prev = z0.detach()
    y = z_prev
    t = 1.0
    with torch.enable_grad():
        for _ in range(steps):
            y = y.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(y).sum(), y)
            z = soft_threshold(y.detach() - step_size * grad, step_size * l1)
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = z + ((t - 1) / t_next) * (z - z_prev)
            z_prev, t = z, t_next
    return z_prev.detach()
