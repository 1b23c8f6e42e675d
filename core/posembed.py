"""Fixed positional embeddings (2D/3D grids come from timm's `build_sincos2d_pos_embed`)."""

from __future__ import annotations

import torch
from torch import Tensor


def sincos_1d(num_positions: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Transformer sin-cos embedding of positions `0..num_positions-1`, `[num_positions, dim]`."""
    if dim % 2:
        raise ValueError(f"sin-cos positions need an even width, got dim={dim}")
    omega = 1.0 / temperature ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None]  # [P, D/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()
