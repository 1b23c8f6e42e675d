"""Point-cloud throughput, in one run (ratios are what to read; these machines are shared and noisy):

(a) grouping a batch `[64, 1024, 3]`: FPS of 64 centres + 32-NN + the proximity sequencer, batched
    on the device (`pointcloud.groups`), vs the same ops run cloud by cloud in a Python loop (what
    per-sample data loaders do), vs pytorch3d's FPS/kNN and `fpsample` when installed;
(b) the tokenizer (grouping + mini-PointNet) and one Point-JEPA training step (point_jepa_demo's
    model on the synthetic shapes), samples/s.

Rounds alternate A and B (ABBA) and the median of per-round ratios is reported. Prints:

    group_batched_samples_per_s=...  group_per_cloud_samples_per_s=...  group_speedup=...
    [group_pytorch3d_samples_per_s=...]  [fps_fpsample_samples_per_s=...]
    tokenizer_samples_per_s=...  point_jepa_train_samples_per_s=...

Usage: python benchmarks/bench_pointcloud.py [--rounds 6] [--batch 64]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from timing import abba, timed, train_samples_per_s

from polyjepa.modalities.pointcloud.ops import (
    HAVE_PYTORCH3D,
    farthest_point_sample,
    gather_points,
    knn,
    proximity_order,
)
from polyjepa.modalities.pointcloud.tokenizer import PointGroups, PointPatchEmbed

GROUPS, GROUP_SIZE = 64, 32


def group_batch(x: torch.Tensor, use_pytorch3d: bool = False) -> torch.Tensor:
    """FPS centres, proximity order, kNN indices of a batch `[B, P, 3]`."""
    centers = gather_points(x, farthest_point_sample(x, GROUPS, use_pytorch3d=use_pytorch3d))
    centers = gather_points(centers, proximity_order(centers))
    return knn(centers, x, GROUP_SIZE, use_pytorch3d=use_pytorch3d)


def group_per_cloud(x: torch.Tensor) -> list[torch.Tensor]:
    return [group_batch(cloud[None]) for cloud in x]


def bench_grouping(batch: int, rounds: int) -> None:
    x = torch.randn(batch, 1024, 3, generator=torch.Generator().manual_seed(0))
    batched, per_cloud = group_batch(x), group_per_cloud(x)
    assert torch.equal(batched, torch.cat(per_cloud)), "batched and per-cloud grouping disagree"
    t_b, t_p, ratio = abba(lambda: group_batch(x), lambda: group_per_cloud(x), rounds)
    print(f"group_batched_samples_per_s={batch / t_b:.1f}")
    print(f"group_per_cloud_samples_per_s={batch / t_p:.1f}")
    print(f"group_speedup={ratio:.2f}")
    if HAVE_PYTORCH3D:
        t = statistics.median(timed(lambda: group_batch(x, use_pytorch3d=True)) for _ in range(rounds))
        print(f"group_pytorch3d_samples_per_s={batch / t:.1f}")
    try:
        import fpsample
    except ImportError:
        return
    clouds = x.numpy()
    t = statistics.median(timed(lambda: [fpsample.fps_sampling(c, GROUPS) for c in clouds])
                          for _ in range(rounds))
    print(f"fps_fpsample_samples_per_s={batch / t:.1f}")


def bench_tokenizer(batch: int, rounds: int) -> None:
    x = torch.randn(batch, 1024, 3, generator=torch.Generator().manual_seed(1))
    frontend, tokenizer = PointGroups(GROUPS, GROUP_SIZE), PointPatchEmbed(384)
    with torch.no_grad():
        tokenizer(frontend(x))  # warm-up
        t = statistics.median(timed(lambda: tokenizer(frontend(x))) for _ in range(rounds))
    print(f"tokenizer_samples_per_s={batch / t:.1f}")


def bench_training(steps: int) -> None:
    rate = train_samples_per_s("point_jepa_demo", ["synthetic=true"], steps)
    print(f"point_jepa_train_samples_per_s={rate:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    bench_grouping(args.batch, args.rounds)
    bench_tokenizer(args.batch, args.rounds)
    bench_training(args.train_steps)


if __name__ == "__main__":
    main()
