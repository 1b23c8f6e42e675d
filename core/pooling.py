"""Pool token latents `[B, R + N, D]` into one vector per sample for probes and monitors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from polyjepa.config import POOLINGS

if TYPE_CHECKING:
    from polyjepa.encoders import Backbone


def pool(h: Tensor, mode: str, num_prefix_tokens: int = 0, pad_mask: Tensor | None = None,
         step_tokens: int = 1) -> Tensor:
    """Pool latents `h [B, R + N, D]` whose first R = `num_prefix_tokens` are register tokens.

    Modes: `mean` over all tokens -> `[B, D]`; `flatten` -> `[B, (R + N) * D]` (T-JEPA's
    downstream input); `prefix` -> the register tokens flattened `[B, R * D]`; `mean_max` -> mean
    and max over the N non-register tokens concatenated `[B, 2D]` (Point-JEPA); `mean_plus_max`
    -> their sum `[B, D]` (BYOL-A's AudioNTT temporal pooling); `last` -> the mean of the last
    real step's `step_tokens` tokens `[B, D]` (what a causal encoder has seen the whole sample
    by; a step = a patch's channel tokens on a time-major grid).

    `pad_mask [B, N]` (True = padding, e.g. the end of a short series) leaves padding tokens out
    of means and maxima, and zeroes them in `flatten`.
    """
    r = num_prefix_tokens
    valid = None
    if pad_mask is not None:
        valid = torch.cat([pad_mask.new_zeros(pad_mask.shape[0], r), pad_mask], 1).logical_not()
        valid = valid[..., None]  # [B, R + N, 1]
    if mode == "mean":
        return h.mean(1) if valid is None else _masked_mean(h, valid)
    if mode == "flatten":
        return (h if valid is None else torch.where(valid, h, 0.0)).flatten(1)
    if mode == "prefix":
        if r == 0:
            raise ValueError("pooling 'prefix' needs an encoder with reg_tokens > 0")
        return h[:, :r].flatten(1)
    if mode == "last":
        b, d = h.shape[0], h.shape[2]
        steps = h[:, r:].reshape(b, -1, step_tokens, d)  # [B, N / S, S, D]
        real = steps.shape[1] if pad_mask is None else (~pad_mask).sum(1).clamp_min(1) // step_tokens
        index = torch.as_tensor(real, device=h.device).expand(b) - 1
        return steps[torch.arange(b, device=h.device), index].mean(1)
    if mode in ("mean_max", "mean_plus_max"):
        body = h[:, r:]
        if valid is None:
            mean, top = body.mean(1), body.amax(1)
        else:
            keep = valid[:, r:]
            mean = _masked_mean(body, keep)
            top = body.masked_fill(~keep, torch.finfo(body.dtype).min).amax(1)  # NaN-free
        return torch.cat([mean, top], dim=1) if mode == "mean_max" else mean + top
    raise ValueError(f"unknown pooling '{mode}'; choose from {', '.join(POOLINGS)}")


def _masked_mean(h: Tensor, valid: Tensor) -> Tensor:
    """Mean of `h [B, N, D]` over the tokens where `valid [B, N, 1]` is True."""
    return torch.where(valid, h, 0.0).sum(1) / valid.sum(1).clamp_min(1)


def pooled_dim(backbone: Backbone, mode: str, meta: dict) -> int:
    """Width of `pool(backbone(x), mode)`; `flatten` needs `meta["num_tokens"]` (N)."""
    d, r = backbone.dim, backbone.num_prefix_tokens
    widths = {"mean": d, "mean_max": 2 * d, "mean_plus_max": d, "prefix": r * d, "last": d}
    if mode == "flatten":
        return (r + meta["num_tokens"]) * d
    if mode == "prefix" and r == 0:
        raise ValueError("pooling 'prefix' needs an encoder with reg_tokens > 0")
    if mode not in widths:
        raise ValueError(f"unknown pooling '{mode}'; choose from {', '.join(POOLINGS)}")
    return widths[mode]
