"""Batched point-cloud operations on the device: farthest point sampling, k-nearest-neighbour
and radius grouping, and the proximity sequencer of Point-JEPA.

Pure torch, vectorised over the batch (one small kernel per FPS / sequencer step, no Python loop
over clouds). When pytorch3d is importable, `farthest_point_sample` and `knn` use its fused ops
instead; both paths give the same indices for the same start point (tests check it).
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # optional: no wheels for every platform
    from pytorch3d import ops as _p3d
except ImportError:  # pragma: no cover - depends on the environment
    _p3d = None

HAVE_PYTORCH3D = _p3d is not None


def gather_points(points: Tensor, idx: Tensor) -> Tensor:
    """`points [B, P, C]`, `idx [B, ...]` long -> `[B, ..., C]`."""
    b, c = points.shape[0], points.shape[-1]
    flat = idx.reshape(b, -1)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, c))
    return out.view(*idx.shape, c)


def farthest_point_sample(points: Tensor, k: int, start: Tensor | None = None,
                          use_pytorch3d: bool | None = None) -> Tensor:
    """Indices `[B, k]` of `k` farthest points of each cloud `points [B, P, 3]`.

    The first index is `start [B]` (default 0); each next one is the point whose distance to the
    chosen set is largest (the first such point on ties). A degenerate cloud (every point equal)
    gives its start point repeated: distances are all 0, nothing is divided, the loop is fixed.

    Args:
        use_pytorch3d: None -> pytorch3d when importable and `start` is None.
    """
    b, p, _ = points.shape
    if not 1 <= k <= p:
        raise ValueError(f"farthest_point_sample: k={k} must be in [1, {p}] (points per cloud)")
    if use_pytorch3d is None:
        use_pytorch3d = HAVE_PYTORCH3D and start is None
    if use_pytorch3d:
        if not HAVE_PYTORCH3D:
            raise RuntimeError("pytorch3d is not installed")
        return _p3d.sample_farthest_points(points.float(), K=k, random_start_point=False)[1]
    x, y, z = (c.contiguous() for c in points.float().unbind(-1))  # [B, P] each: no reduction
    current = torch.zeros(b, dtype=torch.long, device=points.device) if start is None else start
    chosen = torch.empty(b, k, dtype=torch.long, device=points.device)
    nearest = torch.full((b, p), float("inf"), device=points.device)  # distance to chosen set
    rows = torch.arange(b, device=points.device)
    for i in range(k):
        chosen[:, i] = current
        d = (x - x[rows, current, None]).square_()
        d += (y - y[rows, current, None]).square_()
        d += (z - z[rows, current, None]).square_()
        torch.minimum(nearest, d, out=nearest)
        current = nearest.argmax(1)
    return chosen


def pairwise_dist(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances `[B, N, M]` between `a [B, N, 3]` and `b [B, M, 3]`, computed
    directly (no `|a|^2 + |b|^2 - 2ab` matrix-product shortcut, whose round-off reorders near
    ties)."""
    return torch.cdist(a.float(), b.float(), compute_mode="donot_use_mm_for_euclid_dist")


def knn(queries: Tensor, points: Tensor, k: int, use_pytorch3d: bool | None = None) -> Tensor:
    """Indices `[B, G, k]` of the `k` nearest `points [B, P, 3]` of each query `[B, G, 3]`,
    nearest first."""
    p = points.shape[1]
    if not 1 <= k <= p:
        raise ValueError(f"knn: k={k} must be in [1, {p}] (points per cloud)")
    if use_pytorch3d is None:
        use_pytorch3d = HAVE_PYTORCH3D
    if use_pytorch3d:
        if not HAVE_PYTORCH3D:
            raise RuntimeError("pytorch3d is not installed")
        return _p3d.knn_points(queries.float(), points.float(), K=k, return_sorted=True).idx
    return pairwise_dist(queries, points).topk(k, dim=-1, largest=False, sorted=True).indices


def radius_group(queries: Tensor, points: Tensor, k: int, radius: float) -> Tensor:
    """Indices `[B, G, k]` of up to `k` nearest points within `radius` of each query; slots
    left empty repeat the nearest point (PointNet++'s ball query pads with the first find)."""
    dist, idx = pairwise_dist(queries, points).topk(k, dim=-1, largest=False, sorted=True)
    outside = dist > radius
    return torch.where(outside, idx[..., :1].expand_as(idx), idx)


def proximity_order(centers: Tensor) -> Tensor:
    """Point-JEPA's sequencer: a permutation `[B, G]` of the centres `[B, G, 3]` that starts at the
    centre with the smallest coordinate sum and repeatedly moves to the nearest unvisited centre.

    Vectorised over the batch: `G - 1` steps over a `[B, G, G]` distance matrix.
    """
    b, g, _ = centers.shape
    d = pairwise_dist(centers, centers)  # [B, G, G]
    rows = torch.arange(b, device=centers.device)
    current = centers.sum(-1).argmin(1)  # [B]
    order = torch.empty(b, g, dtype=torch.long, device=centers.device)
    order[:, 0] = current
    visited = torch.zeros(b, g, dtype=torch.bool, device=centers.device)
    visited[rows, current] = True
    for i in range(1, g):
        step = d[rows, current].masked_fill(visited, float("inf"))  # [B, G]
        current = step.argmin(1)
        order[:, i] = current
        visited[rows, current] = True
    return order
