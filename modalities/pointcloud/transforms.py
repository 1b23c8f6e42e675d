"""Random point-cloud augmentations, batched: each call transforms a whole batch `[B, P, C]`
(xyz = the first 3 columns; other columns pass through) with parameters drawn from the batch's
generator, one set per cloud, or one per batch with `per_batch=True` (Point-JEPA's reference
code draws once per batch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from polyjepa.modalities.pointcloud.ops import gather_points, knn
from polyjepa.modalities.pointcloud.readers import NORMALIZATIONS, normalize

AXES = {"x": 0, "y": 1, "z": 2}


def _draws(b: int, per_batch: bool) -> int:
    return 1 if per_batch else b


def _with_xyz(x: Tensor, xyz: Tensor) -> Tensor:
    return torch.cat([xyz, x[..., 3:]], dim=-1) if x.shape[-1] > 3 else xyz


class RandomScale:
    """Multiply coordinates by `U(low, high)`, per axis (`anisotropic`) or one factor; an axis
    whose `symmetries` entry is 1 is also mirrored with probability 1/2."""

    kind = "augmentation"

    def __init__(self, low: float = 0.8, high: float = 1.2, anisotropic: bool = True,
                 symmetries: tuple[int, int, int] = (0, 0, 0), per_batch: bool = False) -> None:
        if not 0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got ({low}, {high})")
        if len(symmetries) != 3 or set(symmetries) - {0, 1}:
            raise ValueError(f"symmetries must be three 0/1 flags (x, y, z), got {symmetries}")
        self.low, self.high, self.anisotropic = low, high, anisotropic
        self.symmetries, self.per_batch = torch.tensor(symmetries, dtype=torch.bool), per_batch

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n = _draws(x.shape[0], self.per_batch)
        scale = self.low + (self.high - self.low) * torch.rand(
            n, 3 if self.anisotropic else 1, generator=generator)
        flip = (torch.rand(n, 3, generator=generator) < 0.5) & self.symmetries
        scale = scale.expand(n, 3) * torch.where(flip, -1.0, 1.0)
        return _with_xyz(x, x[..., :3] * scale[:, None, :].to(x.dtype))


class RandomTranslate:
    """Add a shift `U(-max_shift, max_shift)` per axis."""

    kind = "augmentation"

    def __init__(self, max_shift: float = 0.2, per_batch: bool = False) -> None:
        self.max_shift, self.per_batch = max_shift, per_batch

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n = _draws(x.shape[0], self.per_batch)
        shift = self.max_shift * (2 * torch.rand(n, 1, 3, generator=generator) - 1)
        return _with_xyz(x, x[..., :3] + shift.to(x.dtype))


def rotation_matrices(angles: Tensor, axis: int) -> Tensor:
    """`[N, 3, 3]` rotations by `angles [N]` (radians) about coordinate `axis`."""
    c, s = angles.cos(), angles.sin()
    r = torch.zeros(angles.shape[0], 3, 3, dtype=angles.dtype)
    i, j = [a for a in range(3) if a != axis]
    r[:, axis, axis] = 1
    r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
    return r


class RandomRotate:
    """Rotate about each of `axes` (e.g. `[z]`, the up axis of LiDAR; `[y]` for ShapeNet) by an
    angle `U(-max_angle, max_angle)` (default a full turn), in the order given."""

    kind = "augmentation"

    def __init__(self, axes: Sequence[str] = ("z",), max_angle: float = math.pi,
                 per_batch: bool = False) -> None:
        unknown = [a for a in axes if a not in AXES]
        if unknown or not axes:
            raise ValueError(f"rotation axes must be among x, y, z, got {list(axes)}")
        self.axes, self.max_angle, self.per_batch = [AXES[a] for a in axes], max_angle, per_batch

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n = _draws(x.shape[0], self.per_batch)
        xyz = x[..., :3]
        for axis in self.axes:
            angle = self.max_angle * (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
            rot = rotation_matrices(angle, axis).to(x.dtype)  # [N, 3, 3]
            xyz = xyz @ rot.transpose(1, 2)
        return _with_xyz(x, xyz)


class Normalize:
    """Per-cloud normalisation steps (`center`, `unit_sphere`, `height`) inside the augmentation
    chain, e.g. to re-centre after a random scale, as Point-JEPA does."""

    kind = "augmentation"

    def __init__(self, steps: Sequence[str] = ("center", "unit_sphere")) -> None:
        unknown = [s for s in steps if s not in NORMALIZATIONS]
        if unknown:
            raise ValueError(f"normalize step '{unknown[0]}' is not one of {', '.join(NORMALIZATIONS)}")
        self.steps = list(steps)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return normalize(x, self.steps)


class LocalCrop:
    """A local crop: the `fraction` of each cloud's points nearest a centre drawn uniformly
    among its points, `[B, P, C] -> [B, round(fraction P), C]` (LeJEPA's local views, the point
    cloud's analogue of a small image crop; re-normalise after it)."""

    kind = "augmentation"

    def __init__(self, fraction: float = 0.5) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        self.fraction = fraction

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, p, _ = x.shape
        keep = max(1, round(self.fraction * p))
        centre = torch.randint(p, (b, 1), generator=generator)
        xyz = x[..., :3].float()
        idx = knn(gather_points(xyz, centre.to(x.device)), xyz, keep)  # [B, 1, keep]
        return gather_points(x, idx[:, 0])
