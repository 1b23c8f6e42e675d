"""Fixed sin-cos positional embeddings: 1-D sequences here, grids through timm's
`build_sincos2d_pos_embed` (which stacks one band set per axis, so it serves 3-D grids too)."""

from __future__ import annotations

import torch
from timm.layers import build_sincos2d_pos_embed
from torch import Tensor


def sincos_1d(num_positions: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Transformer sin-cos embedding of positions `0..num_positions-1`, `[num_positions, dim]`."""
    if dim % 2:
        raise ValueError(f"sin-cos positions need an even width, got dim={dim}")
    omega = 1.0 / temperature ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None]  # [P, D/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_grid(grid: tuple[int, ...], dim: int) -> Tensor:
    """Sin-cos embedding of a row-major `(H, W)` or `(T, H, W)` token grid, `[prod(grid), dim]`.

    Every axis gets the same `dim / (2 * len(grid))` frequencies, laid out as the sines of every
    axis then their cosines (timm's order), as I-JEPA's 2-D and V-JEPA's 3-D embeddings split the
    width evenly between axes; `dim` must divide into them.
    """
    per_axis = 2 * len(grid)
    if dim % (2 * per_axis):
        raise ValueError(f"a {len(grid)}-D sin-cos grid embedding needs a width divisible by "
                         f"{2 * per_axis}, got dim={dim}")
    # timm's bands: dim // 4 per axis; asking for 4 * (dim / per_axis) gives dim / per_axis each
    return build_sincos2d_pos_embed(list(grid), 4 * dim // per_axis).float()
