"""Point-cloud modality: readers (xyz/txt/pts, PLY, OFF, npy, npz bundles), batched FPS/kNN
grouping with Point-JEPA's proximity sequencer, a mini-PointNet tokenizer, augmentations."""

from __future__ import annotations

import glob
import logging
from operator import attrgetter
from pathlib import Path

import torch

from polyjepa.files import list_files, split_files, training_classes
from polyjepa.modalities.pointcloud.ops import pairwise_dist
from polyjepa.modalities.pointcloud.readers import (
    Cloud,
    PointCloudDataConfig,
    PointClouds,
    read_bundle,
    read_clouds,
)
from polyjepa.modalities.pointcloud.synthetic import CLASS_NAMES, synthetic_clouds
from polyjepa.modalities.pointcloud.tokenizer import PointGroups, PointPatchEmbed
from polyjepa.modalities.pointcloud.transforms import (
    LocalCrop,
    Normalize,
    RandomRotate,
    RandomScale,
    RandomTranslate,
)
from polyjepa.paths import resolve_path
from polyjepa.registry import ModalityPlugin

log = logging.getLogger(__name__)

DISTANCE_BINS = 32
DISTANCE_POINTS = 256  # the distance histogram uses every k-th point, at most this many


def _meta(train: PointClouds, class_names: list[str]) -> dict:
    return {"class_names": list(class_names), "num_classes": len(class_names),
            "num_points": train.num_points, "in_channels": train.channels}


def _dataset(clouds: list[Cloud], class_names: list[str], cfg: PointCloudDataConfig,
             source: str) -> PointClouds:
    dataset = PointClouds(clouds, class_names, cfg.num_points, cfg.subsample, cfg.normalize)
    if dataset.num_resampled:
        log.warning("%s: %d of %d clouds have fewer than data.num_points=%d points and are "
                    "resampled with replacement", source, dataset.num_resampled, len(dataset),
                    cfg.num_points)
    return dataset


def _read(spec: str, cfg: PointCloudDataConfig, root: Path | None,
          field_name: str) -> tuple[list[Cloud], list[str | None], list[str] | None]:
    """`(clouds, manifest splits, bundle class names)` of a folder, manifest or `.npz` bundle."""
    path = resolve_path(spec, root, field_name) if spec and not glob.has_magic(spec) else None
    if path is not None and path.is_file() and path.suffix.lower() == ".npz":
        clouds, names = read_bundle(path, cfg)
        return clouds, [None] * len(clouds), names
    files, splits = list_files(spec, cfg, root, field_name, "point clouds")
    clouds = read_clouds(files, cfg, spec)
    kept = {str(c.source) for c in clouds}
    splits = [s for f, s in zip(files, splits, strict=True) if str(f.path) in kept]
    return clouds, splits, None


def load_data(cfg: PointCloudDataConfig, root: Path | None) -> tuple[PointClouds, PointClouds, dict]:
    """`(train, test, meta)`: clouds read, checked and split as the data section says."""
    clouds, splits, names = _read(cfg.path, cfg, root, "data.path")
    if cfg.test_path is not None:
        train_clouds = clouds
        test_clouds, _, _ = _read(cfg.test_path, cfg, root, "data.test_path")
    else:
        train_clouds, test_clouds = split_files(clouds, splits, cfg, cfg.path)
    class_names = training_classes(train_clouds, test_clouds, names, attrgetter("source"))
    train = _dataset(train_clouds, class_names, cfg, "training clouds")
    test = _dataset(test_clouds, class_names, cfg, "test clouds")
    return train, test, _meta(train, class_names)


def load_file(cfg: PointCloudDataConfig, path: str, root: Path | None, meta: dict) -> PointClouds:
    """Clouds of a folder, manifest or bundle, labelled with the run's classes (new ones appended)."""
    clouds, _, _ = _read(path, cfg, root, "data")
    names = list(meta["class_names"])
    names += sorted({c.label for c in clouds if c.label is not None} - set(names))
    return _dataset(clouds, names, cfg, str(path))


def synthetic(n: int = 400, seed: int = 0) -> tuple[PointClouds, PointClouds, dict]:
    """Built-in synthetic shapes (see `synthetic.py`), 1024 points each, split 80/20."""
    cfg = PointCloudDataConfig(path="synthetic")
    arrays, labels = synthetic_clouds(n, points=cfg.num_points, seed=seed)
    clouds = [Cloud(a, CLASS_NAMES[y], f"synthetic[{i}]") for i, (a, y) in
              enumerate(zip(arrays, labels, strict=True))]
    cut = int(0.8 * n)
    train = PointClouds(clouds[:cut], CLASS_NAMES, cfg.num_points, cfg.subsample, cfg.normalize)
    test = PointClouds(clouds[cut:], CLASS_NAMES, cfg.num_points, cfg.subsample, cfg.normalize)
    return train, test, _meta(train, CLASS_NAMES)


@torch.no_grad()
def raw_features(dataset: PointClouds) -> torch.Tensor:
    """The raw-geometry baseline `[N, 32 + 15]`: each evaluation view's histogram of pairwise
    distances (the D2 shape distribution, on the normalised cloud, over at most 256 of its
    points) and coordinate statistics (per-axis mean, std, min, max; the covariance's
    eigenvalues, largest first)."""
    rows = []
    for i in range(len(dataset)):
        xyz = dataset[i][0][:, :3].double()
        sparse = xyz[:: max(1, xyz.shape[0] // DISTANCE_POINTS)][:DISTANCE_POINTS]
        d = pairwise_dist(sparse[None], sparse[None])[0].double()
        far = float(d.max()) or 1.0
        hist = torch.histc(d.flatten(), bins=DISTANCE_BINS, min=0, max=far) / d.numel()
        eig = torch.linalg.eigvalsh(torch.cov(xyz.T)).flip(0)
        rows.append(torch.cat([hist, xyz.mean(0), xyz.std(0), xyz.amin(0), xyz.amax(0), eig]))
    return torch.stack(rows).float()


plugin = ModalityPlugin(
    name="pointcloud",
    data_config=PointCloudDataConfig,
    load_data=load_data,
    synthetic=synthetic,
    raw_features=raw_features,
    load_file=load_file,
    components={
        "groups": PointGroups,
        "pointnet": PointPatchEmbed,
        "scale": RandomScale,
        "translate": RandomTranslate,
        "crop": LocalCrop,
        "rotate": RandomRotate,
        "normalize": Normalize,
    },
)

