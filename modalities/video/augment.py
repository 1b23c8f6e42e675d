"""Video views for LeJEPA-style objectives, batched over clips `[B, T, C, H, W]`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

from polyjepa.crops import random_windows


class ClipCrop:
    """A temporal and a spatial crop of each clip, `[B, T, C, H, W] -> [B, frames, C, H, W]`.

    Temporal: `frames` consecutive frames from a uniform start (None: all T; the clip's speed is
    kept, no resampling). Spatial: a box whose sides are a fraction `U(scale)` of the frame's
    (one fraction for both sides), at a uniform position, resized back to `H x W` bilinearly
    (torchvision's `roi_align` with one sample per output pixel, so the full box is the
    identity). One draw per clip, shared by its frames.

    Args:
        frames: frames per view (LeJEPA's local views: fewer than the clip's), or None.
        scale: range of the box side over the frame side, within (0, 1].
    """

    kind = "augmentation"

    def __init__(self, frames: int | None = None, scale: Sequence[float] = (0.7, 1.0)) -> None:
        low, high = scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale}")
        if frames is not None and frames < 1:
            raise ValueError(f"frames must be >= 1 or null (all), got {frames}")
        self.frames, self.scale = frames, (float(low), float(high))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, t, c, h, w = x.shape
        n = t if self.frames is None else min(self.frames, t)
        x = random_windows(x, n, 1, generator)  # [B, n, C, H, W]
        low, high = self.scale
        side = low + (high - low) * torch.rand(b, generator=generator, dtype=torch.float64)
        top = torch.rand(b, generator=generator, dtype=torch.float64) * (1 - side) * h
        left = torch.rand(b, generator=generator, dtype=torch.float64) * (1 - side) * w
        boxes = torch.stack([left, top, left + side * w, top + side * h], dim=1)  # [B, 4] pixels
        boxes = boxes.repeat_interleave(n, dim=0)  # one box per frame, [B n, 4]
        rois = torch.cat([torch.arange(b * n, dtype=torch.float64)[:, None], boxes], dim=1)
        frames = x.reshape(b * n, c, h, w)
        out = roi_align(frames.float(), rois.to(frames.device, torch.float32), (h, w),
                        sampling_ratio=1, aligned=True)
        return out.to(x.dtype).view(b, n, c, h, w)
