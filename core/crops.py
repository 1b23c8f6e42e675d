"""Random crops shared by the modality plugins' views (LeJEPA's local views and the like)."""

from __future__ import annotations

import torch
from torch import Tensor


def random_windows(x: Tensor, length: int, dim: int, generator: torch.Generator) -> Tensor:
    """`length` consecutive entries along `dim` of each example (dim 0), from a start drawn
    uniformly per example: `[B, ..., T, ...] -> [B, ..., length, ...]` (audio: frames of a
    spectrogram; video: frames of a clip). Draws `B` integers from `generator`."""
    b, total = x.shape[0], x.shape[dim]
    if not 1 <= length <= total:
        raise ValueError(f"a window of {length} does not fit in {total} entries along dim {dim}")
    dim = dim % x.ndim
    start = torch.randint(total - length + 1, (b,), generator=generator).to(x.device)
    index = start[:, None] + torch.arange(length, device=x.device)  # [B, length]
    view = [b if i == 0 else length if i == dim else 1 for i in range(x.ndim)]
    size = [length if i == dim else s for i, s in enumerate(x.shape)]
    return x.gather(dim, index.view(view).expand(size))
