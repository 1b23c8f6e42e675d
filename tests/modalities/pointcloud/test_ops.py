"""Batched FPS, kNN, radius grouping and the proximity sequencer: properties on real tensors,
agreement with per-cloud references (and with pytorch3d when it is installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.modalities.pointcloud.ops import (
    HAVE_PYTORCH3D,
    farthest_point_sample,
    gather_points,
    knn,
    proximity_order,
    radius_group,
)
from polyjepa.modalities.pointcloud.tokenizer import MiniPointNet, PointGroups, PointPatchEmbed


def clouds(b: int = 4, p: int = 300, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, p, 3, generator=torch.Generator().manual_seed(seed))


def fps_reference(points: np.ndarray, k: int, start: int = 0) -> list[int]:
    """Textbook FPS on one cloud, in float64."""
    chosen = [start]
    nearest = np.full(len(points), np.inf)
    for _ in range(k - 1):
        nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(nearest.argmax()))
    return chosen


def test_fps_each_new_centre_is_the_farthest_from_the_chosen_set():
    x = clouds()
    idx = farthest_point_sample(x, 32, use_pytorch3d=False)
    assert idx.shape == (4, 32)
    for b in range(4):
        chosen = idx[b].tolist()
        assert len(set(chosen)) == 32  # distinct on a generic cloud
        for i in range(1, 32):
            d = torch.cdist(x[b].double(), x[b, chosen[:i]].double()).min(1).values
            assert d[chosen[i]] == pytest.approx(float(d.max()), rel=1e-6)


def test_fps_batched_matches_the_per_cloud_reference_and_honours_start():
    x = clouds(3, 200, seed=1)
    start = torch.tensor([0, 17, 199])
    idx = farthest_point_sample(x, 40, start=start, use_pytorch3d=False)
    for b in range(3):
        assert idx[b].tolist() == fps_reference(x[b].double().numpy(), 40, int(start[b]))


def test_fps_of_one_repeated_point_terminates_with_finite_output():
    x = torch.tensor([1.0, 2.0, 3.0]).expand(2, 500, 3).contiguous()
    idx = farthest_point_sample(x, 64, use_pytorch3d=False)
    assert idx.shape == (2, 64) and (idx == 0).all()  # nothing farther than the start
    groups = PointGroups(num_groups=16, group_size=8)(x)
    assert torch.isfinite(groups["patches"]).all() and torch.isfinite(groups["centers"]).all()


def test_fps_rejects_k_larger_than_the_cloud():
    with pytest.raises(ValueError, match="k=10"):
        farthest_point_sample(clouds(1, 5), 10, use_pytorch3d=False)


@pytest.mark.skipif(not HAVE_PYTORCH3D, reason="pytorch3d is not installed (optional; no wheels "
                    "for this platform): the pure-torch path is checked against a reference")
def test_fps_and_knn_agree_with_pytorch3d():
    x = clouds(4, 500, seed=2)
    assert torch.equal(farthest_point_sample(x, 64, use_pytorch3d=False),
                       farthest_point_sample(x, 64, use_pytorch3d=True))
    centers = gather_points(x, farthest_point_sample(x, 16))
    assert torch.equal(knn(centers, x, 8, use_pytorch3d=False), knn(centers, x, 8, use_pytorch3d=True))


def test_knn_returns_the_k_nearest_sorted():
    x = clouds(2, 100, seed=3)
    q = x[:, :5]
    idx = knn(q, x, 7, use_pytorch3d=False)
    d = torch.cdist(q.double(), x.double())
    expected = d.argsort(-1)[..., :7]
    assert torch.equal(idx, expected)
    assert (idx[..., 0] == torch.arange(5)).all()  # a point is its own nearest neighbour


def test_radius_group_keeps_only_points_inside_and_pads_with_the_nearest():
    x = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [5.0, 0, 0], [6.0, 0, 0]]])
    idx = radius_group(x[:, :1], x, k=4, radius=0.25)
    assert idx[0, 0].tolist() == [0, 1, 2, 0]  # 3 inside; the 4th slot repeats the nearest


def test_proximity_order_is_a_greedy_nearest_neighbour_walk_from_the_min_sum_centre():
    c = clouds(5, 40, seed=4)
    order = proximity_order(c)
    for b in range(5):
        seq = order[b].tolist()
        assert sorted(seq) == list(range(40))  # a permutation
        assert seq[0] == int(c[b].sum(-1).argmin())
        d = torch.cdist(c[b].double(), c[b].double())
        for i in range(1, 40):
            unvisited = [j for j in range(40) if j not in seq[:i]]
            assert d[seq[i - 1], seq[i]] == pytest.approx(float(d[seq[i - 1], unvisited].min()))


def test_groups_are_local_ordered_and_keep_extra_columns():
    x = torch.cat([clouds(2, 256, seed=5), torch.rand(2, 256, 1)], dim=-1)  # + intensity
    frontend = PointGroups(num_groups=16, group_size=8, num_points=128)
    out = frontend(x)
    centers, patches = out["centers"], out["patches"]
    assert centers.shape == (2, 16, 3) and patches.shape == (2, 16, 8, 4)
    assert patches[..., 0, :3].abs().max() < 1e-6  # each centre is its own nearest point
    assert (patches[..., 3] >= 0).all() and (patches[..., 3] <= 1).all()  # intensity untouched
    assert torch.equal(proximity_order(centers), torch.arange(16).expand(2, 16))  # already ordered
    assert frontend.layout == {"num_tokens": 16}
    with pytest.raises(ValueError, match="num_points"):
        PointGroups(num_groups=300, group_size=8)(x)


def test_pointnet_tokenizer_shapes_and_permutation_invariance():
    torch.manual_seed(0)
    tok = PointPatchEmbed(dim=32, in_channels=3).eval()
    groups = PointGroups(num_groups=8, group_size=16)(clouds(2, 128, seed=6))
    tokens = tok(groups)
    assert tokens.x.shape == (2, 8, 32) and tokens.pos.shape == (2, 8, 32)
    perm = torch.randperm(16)
    shuffled = {**groups, "patches": groups["patches"][:, :, perm]}
    torch.testing.assert_close(tok(shuffled).x, tokens.x)  # max-pooled: order inside a patch is moot
    net = MiniPointNet(3, 32)
    assert net(torch.randn(5, 16, 3)).shape == (5, 32)
