"""Views of series for view-based objectives (BYOL, LeJEPA): window slicing, scaling, jitter."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class SeriesViews:
    """A random view of each series of a batch `{"values": [B, C, T], "length": [B], ...}`:
    a window of `crop` (a fraction range) of its real steps, stretched back over those steps
    (window slicing, Le Guennec et al. 2016), each channel multiplied by `1 + scale * N(0, 1)`
    and `jitter * N(0, 1)` added to every real step. Padding stays zero, lengths and actions are
    kept (actions are not cropped: use it on series without actions, or with `crop: [1, 1]`).
    Runs in the collate; every draw comes from `generator`.

    Args:
        crop: range of the window's share of the real steps (1: no cropping).
        scale: std of the per-channel gain.
        jitter: std of the added noise (the series are standardised).
    """

    kind = "augmentation"

    def __init__(self, crop: tuple[float, float] = (0.6, 1.0), scale: float = 0.1,
                 jitter: float = 0.03) -> None:
        low, high = crop
        if not 0 < low <= high <= 1 or scale < 0 or jitter < 0:
            raise ValueError(f"timeseries.views: need 0 < crop[0] <= crop[1] <= 1 and scale, jitter "
                             f">= 0, got crop={crop}, scale={scale}, jitter={jitter}")
        self.crop, self.scale, self.jitter = (low, high), scale, jitter

    def window(self, series: Tensor, length: int, generator: torch.Generator) -> Tensor:
        """`series [C, T]`'s random window of its first `length` steps, resampled to `length`."""
        low, high = self.crop
        share = low + (high - low) * float(torch.rand((), generator=generator))
        size = max(2, round(share * length))
        if size >= length:
            return series
        start = int(torch.randint(0, length - size + 1, (), generator=generator))
        piece = series[None, :, start:start + size]  # [1, C, size]
        out = series.clone()
        out[:, :length] = F.interpolate(piece, size=length, mode="linear", align_corners=True)[0]
        return out

    def __call__(self, x: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        values, lengths = x["values"], x["length"]
        b, c, t = values.shape
        views = torch.stack([self.window(values[i], int(lengths[i]), generator) for i in range(b)])
        real = (torch.arange(t) < lengths[:, None]).unsqueeze(1)  # [B, 1, T]
        gain = 1 + self.scale * torch.randn(b, c, 1, generator=generator)
        noise = self.jitter * torch.randn(b, c, t, generator=generator)
        return {**x, "values": torch.where(real, views * gain + noise, 0.0)}
