"""Point patches: FPS centres + kNN neighbourhoods (a fixed frontend), embedded by a mini-PointNet
with a learned positional embedding of the centres (the tokenizer)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyjepa.modalities.pointcloud.ops import (
    farthest_point_sample,
    gather_points,
    knn,
    proximity_order,
    radius_group,
)
from polyjepa.types import Tokens

SEQUENCERS = ("nearest_min_start", "none")


class PointGroups(nn.Module):
    """Group a cloud into patches, on the device and without parameters (`model.frontend`).

    `G` centres by farthest point sampling, the `K` nearest points of each (or up to `K` within
    `radius`), in local coordinates (xyz minus the centre; extra columns such as intensity kept
    as they are). With `sequencer="nearest_min_start"` the patches are put in Point-JEPA's
    proximity order, so token `i` of every cloud is the `i`-th stop of a greedy nearest-neighbour
    walk and maskers can take contiguous runs of token indices as spatially coherent blocks.

    Args:
        num_points: first thin each cloud to this many points by FPS, batched on the device
            (Point-JEPA's 1024), or None to group the clouds as they come.
        num_groups: `G`.
        group_size: `K`.
        radius: None for kNN; a radius (in normalised units) for a radius query.
        sequencer: "nearest_min_start" (Point-JEPA) or "none" (FPS order).

    Input `[B, P, C]` (xyz first); output `{"centers": [B, G, 3], "patches": [B, G, K, C]}`.
    """

    kind = "frontend"

    def __init__(self, num_groups: int = 64, group_size: int = 32, radius: float | None = None,
                 sequencer: str = "nearest_min_start", num_points: int | None = None) -> None:
        super().__init__()
        if sequencer not in SEQUENCERS:
            raise ValueError(f"sequencer '{sequencer}' is not one of {', '.join(SEQUENCERS)}")
        if num_groups < 1 or group_size < 1:
            raise ValueError(f"num_groups and group_size must be >= 1, got {num_groups}, {group_size}")
        self.num_groups, self.group_size = num_groups, group_size
        self.radius, self.sequencer, self.num_points = radius, sequencer, num_points
        self.layout = {"num_tokens": num_groups}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.num_points is not None and x.shape[1] > self.num_points:
            x = gather_points(x, farthest_point_sample(x[..., :3], self.num_points))
        b, p, c = x.shape
        if self.num_groups > p or self.group_size > p:
            raise ValueError(f"clouds of {p} points cannot give {self.num_groups} groups of "
                             f"{self.group_size}; raise data.num_points or lower the grouping")
        xyz = x[..., :3].float()
        centers = gather_points(xyz, farthest_point_sample(xyz, self.num_groups))  # [B, G, 3]
        if self.sequencer == "nearest_min_start":
            centers = gather_points(centers, proximity_order(centers))
        if self.radius is None:
            idx = knn(centers, xyz, self.group_size)
        else:
            idx = radius_group(centers, xyz, self.group_size, self.radius)  # [B, G, K]
        patches = gather_points(x.float(), idx)  # [B, G, K, C]
        local = patches[..., :3] - centers.unsqueeze(2)
        return {"centers": centers, "patches": torch.cat([local, patches[..., 3:]], dim=-1)}


class MiniPointNet(nn.Module):
    """Point-BERT / point2vec patch embedder: `[N, K, C]` points -> `[N, dim]`.

    Shared MLP `a -> b`, max-pool, the pooled feature concatenated in front of each point's
    (`2b` channels), shared MLP `c -> dim`, max-pool, with BatchNorm after the first layer of
    each MLP; the reference code's widths `(a, b, c)` are (128, 256, 512). Its 1x1 convolutions
    are linear layers on channels-last points here: the same function, 1.3-1.5x faster on CPU.
    """

    def __init__(self, in_channels: int, dim: int,
                 widths: tuple[int, int, int] = (128, 256, 512)) -> None:
        super().__init__()
        a, b, c = widths
        self.first = nn.Sequential(nn.Linear(in_channels, a, bias=False), nn.BatchNorm1d(a),
                                   nn.ReLU(inplace=True), nn.Linear(a, b))
        self.second = nn.Sequential(nn.Linear(2 * b, c, bias=False), nn.BatchNorm1d(c),
                                    nn.ReLU(inplace=True), nn.Linear(c, dim))

    def forward(self, points: Tensor) -> Tensor:
        n, k, _ = points.shape
        x = self.first(points.reshape(n * k, -1)).view(n, k, -1)  # [N, K, b]
        pooled = x.amax(dim=1, keepdim=True)
        x = torch.cat([pooled.expand_as(x), x], dim=-1).reshape(n * k, -1)
        return self.second(x).view(n, k, -1).amax(dim=1)


class PointPatchEmbed(nn.Module):
    """Tokenizer: a mini-PointNet per patch and an MLP positional embedding of its centre.

    Args:
        dim: token width D.
        in_channels: columns per point (3 for xyz; more with `data.columns`).
        pos_hidden: hidden width of the positional MLP (3 -> pos_hidden -> D, GELU).
        widths: the mini-PointNet's hidden widths (see `MiniPointNet`).

    Input `{"centers": [B, G, 3], "patches": [B, G, K, C]}` -> `Tokens(x [B, G, D], pos [B, G, D])`.
    """

    def __init__(self, dim: int = 384, in_channels: int = 3, pos_hidden: int = 128,
                 widths: tuple[int, int, int] = (128, 256, 512)) -> None:
        super().__init__()
        self.dim = dim
        self.embed = MiniPointNet(in_channels, dim, widths)
        self.pos = nn.Sequential(nn.Linear(3, pos_hidden), nn.GELU(), nn.Linear(pos_hidden, dim))

    def forward(self, groups: dict[str, Tensor]) -> Tokens:
        patches, centers = groups["patches"], groups["centers"]
        b, g, k, c = patches.shape
        x = self.embed(patches.reshape(b * g, k, c)).view(b, g, self.dim)
        return Tokens(x=x, pos=self.pos(centers))
