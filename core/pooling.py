"""Pool token latents `[B, R + N, D]` into one vector per sample for probes and monitors."""

from __future__ import annotations

import torch
from torch import Tensor

POOLINGS = ("mean", "flatten", "prefix", "mean_max", "mean_plus_max")


def pool(h: Tensor, mode: str, num_prefix_tokens: int = 0) -> Tensor:
    """Pool latents `h [B, R + N, D]` whose first R = `num_prefix_tokens` are register tokens.

    Modes: `mean` over all tokens -> `[B, D]`; `flatten` -> `[B, (R + N) * D]` (T-JEPA's
    downstream input); `prefix` -> the register tokens flattened `[B, R * D]`; `mean_max` -> mean
    and max over the N non-register tokens concatenated `[B, 2D]` (Point-JEPA); `mean_plus_max`
    -> their sum `[B, D]` (BYOL-A's AudioNTT temporal pooling).
    """
    if mode == "mean":
        return h.mean(1)
    if mode == "flatten":
        return h.flatten(1)
    if mode == "prefix":
        if num_prefix_tokens == 0:
            raise ValueError("pooling 'prefix' needs an encoder with reg_tokens > 0")
        return h[:, :num_prefix_tokens].flatten(1)
    if mode == "mean_max":
        body = h[:, num_prefix_tokens:]
        return torch.cat([body.mean(1), body.amax(1)], dim=1)
    if mode == "mean_plus_max":
        body = h[:, num_prefix_tokens:]
        return body.mean(1) + body.amax(1)
    raise ValueError(f"unknown pooling '{mode}'; choose from {', '.join(POOLINGS)}")


def pooled_dim(backbone, mode: str, meta: dict) -> int:
    """Width of `pool(backbone(x), mode)`; `flatten` needs `meta["num_tokens"]` (N)."""
    d, r = backbone.dim, backbone.num_prefix_tokens
    widths = {"mean": d, "mean_max": 2 * d, "mean_plus_max": d, "prefix": r * d}
    if mode == "flatten":
        return (r + meta["num_tokens"]) * d
    if mode == "prefix" and r == 0:
        raise ValueError("pooling 'prefix' needs an encoder with reg_tokens > 0")
    if mode not in widths:
        raise ValueError(f"unknown pooling '{mode}'; choose from {', '.join(POOLINGS)}")
    return widths[mode]
