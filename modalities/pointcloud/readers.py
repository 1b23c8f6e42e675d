"""Read point clouds from files and bundles, and serve fixed-size samples.

Formats (one cloud per file unless said otherwise):

* `.xyz` / `.txt` / `.pts`: text rows of numbers, separated by whitespace or commas; `#` and `//`
  lines are comments, and a first line holding one integer (a point count, as some `.pts`
  files have) is skipped. `data.columns` picks the columns (default x y z = 0 1 2).
* `.ply` (plyfile; ASCII and binary): the `vertex` element; `data.columns` names its properties
  (default x y z). Faces are ignored: a PLY gives its vertices.
* `.off` (ModelNet): with `data.mesh_points > 0`, that many points sampled uniformly on the mesh
  surface (area-weighted triangles, seeded by the file name, so every epoch sees the same
  surface sample); with 0, the vertices.
* `.npy`: one array `[P, >=3]`.
* `.npz` bundle of many clouds: `points [sum P, >=3]`, `offsets` (start of each cloud, with or
  without the final end), `labels [N]`, and optionally `ids [N]` and `class_names`. A bundle is
  itself the dataset: give its path as `data.path`.

Files are found as `polyjepa.files` says (class folders, `data.label_regex`, CSV manifest).
Every cloud is read and checked when the dataset is built (empty, NaN/inf, too few columns or
points: the file is named), and clouds larger than `data.max_points` are randomly thinned once,
so memory stays bounded whatever the file size. Samples are `[num_points, C]`: training draws a
random subset (or FPS from a random start) from a generator the batch seed gives; evaluation
takes FPS from the first point (once; cached). The `pointcloud.groups` frontend can thin the
batch further by FPS on the device, as Point-JEPA does (1024 points). Clouds with fewer points
are resampled with replacement (the count is reported once).
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyjepa.errors import ConfigError, DataError
from polyjepa.extras import require
from polyjepa.files import FileDataConfig, LabelledFile
from polyjepa.modalities.pointcloud.ops import farthest_point_sample

log = logging.getLogger(__name__)

TEXT_EXTENSIONS = (".xyz", ".txt", ".pts")
EXTENSIONS = (*TEXT_EXTENSIONS, ".ply", ".off", ".npy")
SUBSAMPLING = ("fps", "random")
NORMALIZATIONS = ("center", "unit_sphere", "height")


@dataclass
class PointCloudDataConfig(FileDataConfig):
    """The `data:` section of a point-cloud recipe (layout and splits: `FileDataConfig`; a
    `.npz` bundle as `path` is split by `test_fraction` or by `test_groups: {id: [...]}`)."""

    extensions: list[str] = field(default_factory=lambda: list(EXTENSIONS))
    columns: list[int | str] | None = None  # None: x y z (indices for text, names for PLY)
    num_points: int = 1024  # points per sample (the frontend may thin them further by FPS)
    subsample: str = "random"  # training: random | fps (per cloud on the CPU: slow for big clouds)
    normalize: list[str] = field(default_factory=lambda: ["center", "unit_sphere"])  # per sample
    max_points: int = 16384  # larger clouds are randomly thinned to this once, when read
    # fewer points is a bad cloud (an error, or skipped with on_error=skip): 4 points are the
    # fewest that span 3-D; a small cloud is resampled with replacement to `num_points`
    min_points: int = 4
    mesh_points: int = 8192  # .off: points sampled on the surface; 0 uses the vertices


@dataclass
class Cloud:
    """One cloud of a dataset, before sampling: `points [P, C]` float32, label, and id groups."""

    points: np.ndarray
    label: str | None
    source: str
    groups: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading one file


def _columns(cfg: PointCloudDataConfig, names: bool) -> list:
    if cfg.columns is None:
        return ["x", "y", "z"] if names else [0, 1, 2]
    if len(cfg.columns) < 3:
        raise ConfigError(f"data.columns {cfg.columns}: needs at least the 3 coordinate columns")
    kinds = {isinstance(c, str) for c in cfg.columns}
    if kinds != {names}:
        want = "property names (e.g. [x, y, z, intensity])" if names else "column indices"
        raise ConfigError(f"data.columns {cfg.columns}: this format takes {want}")
    return list(cfg.columns)


def _read_text(path: Path, cfg: PointCloudDataConfig) -> np.ndarray:
    try:
        lines = path.read_text(encoding="utf-8").replace(",", " ").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text point cloud (binary content)") from None
    for i, line in enumerate(lines):  # a first data line of one integer is a point count
        text = line.strip()
        if text and not text.startswith(("#", "//")):
            if text.isdigit():
                lines[i] = ""
            break
    try:  # numpy's C parser; on failure, find the offending line for the message
        data = np.loadtxt(lines, comments=("#", "//"), ndmin=2, dtype=np.float64)
    except ValueError as exc:
        _raise_bad_row(path, lines)
        raise DataError(f"{path}: cannot parse the rows of numbers ({exc})") from None
    if data.size == 0:
        raise DataError(f"{path}: holds no points (empty file)")
    cols = _columns(cfg, names=False)
    if data.shape[1] < 3:
        raise DataError(f"{path}: rows have {data.shape[1]} columns; a point needs x y z")
    if max(cols) >= data.shape[1]:
        raise DataError(f"{path}: data.columns {cols} asks for column {max(cols)}, rows have "
                        f"{data.shape[1]}")
    return data[:, cols]


def _raise_bad_row(path: Path, lines: list[str]) -> None:
    width = None
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split("//", 1)[0].split()  # inline comments too
        if not fields:
            continue
        try:
            [float(v) for v in fields]
        except ValueError:
            raise DataError(f"{path}, line {number}: not a row of numbers: "
                            f"{line.strip()[:60]!r}") from None
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            raise DataError(f"{path}, line {number}: {len(fields)} columns, earlier rows have "
                            f"{width} (ragged rows)")


def _read_ply(path: Path, cfg: PointCloudDataConfig) -> np.ndarray:
    PlyData = require("plyfile", "pointcloud", "reading .ply clouds").PlyData

    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several types on malformed files
        raise DataError(f"{path}: cannot read PLY ({exc})") from None
    if "vertex" not in ply:
        raise DataError(f"{path}: PLY has no 'vertex' element")
    vertex = ply["vertex"]
    names = [p.name for p in vertex.properties]
    cols = _columns(cfg, names=True)
    missing = [c for c in cols if c not in names]
    if missing:
        raise DataError(f"{path}: PLY vertex element has no property {missing[0]!r} "
                        f"(it has {', '.join(names)})")
    return np.stack([np.asarray(vertex[c], dtype=np.float64) for c in cols], axis=1)


def _read_off(path: Path, cfg: PointCloudDataConfig) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not an OFF file (binary content)") from None
    tokens = [t for t in (line.split("#", 1)[0].split() for line in text.splitlines()) if t]
    if not tokens:
        raise DataError(f"{path}: holds no points (empty file)")
    head = tokens[0]
    if head[0].upper() == "OFF":
        counts, body = (tokens[1] if len(tokens) > 1 else []), tokens[2:]
    elif head[0].upper().startswith("OFF"):  # ModelNet's glitch: "OFF490 518 0" on one line
        counts, body = [head[0][3:], *head[1:]], tokens[1:]
    else:
        raise DataError(f"{path}: not an OFF file (first line {' '.join(head)!r})")
    try:
        n_vert, n_face = int(counts[0]), int(counts[1])
        verts = np.asarray([[float(v) for v in row[:3]] for row in body[:n_vert]])
        faces = [[int(v) for v in row[1:1 + int(row[0])]] for row in body[n_vert:n_vert + n_face]]
    except (ValueError, IndexError) as exc:
        raise DataError(f"{path}: malformed OFF ({exc})") from None
    if verts.shape[0] != n_vert or n_vert == 0:
        raise DataError(f"{path}: OFF header says {n_vert} vertices, the file holds {verts.shape[0]}")
    if cfg.mesh_points <= 0 or not faces:
        return verts
    tris = np.asarray([[f[0], f[i], f[i + 1]] for f in faces for i in range(1, len(f) - 1)])
    if tris.size == 0 or tris.max() >= n_vert:
        raise DataError(f"{path}: OFF faces refer to vertices that do not exist")
    return sample_surface(verts, tris, cfg.mesh_points, seed=zlib.crc32(path.name.encode()))


def sample_surface(verts: np.ndarray, tris: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` points uniform on a triangle mesh's surface: triangles by area, then uniform
    barycentric coordinates. `verts [V, 3]`, `tris [T, 3]` -> `[n, 3]`."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    rng = np.random.default_rng(seed)
    if not area.sum() > 0:
        return verts[rng.integers(0, len(verts), n)]
    pick = rng.choice(len(tris), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return a[pick] + u[:, None] * (b[pick] - a[pick]) + v[:, None] * (c[pick] - a[pick])


def _read_npy(path: Path, cfg: PointCloudDataConfig) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read .npy ({exc or 'empty or truncated file'})") from None
    if data.ndim != 2:
        raise DataError(f"{path}: expected one cloud [P, >=3], got shape {list(data.shape)}")
    cols = _columns(cfg, names=False)
    if data.shape[1] < 3 or max(cols) >= data.shape[1]:
        raise DataError(f"{path}: {data.shape[1]} columns; needs x y z (and data.columns {cols})")
    return data[:, cols].astype(np.float64)


READERS = {**dict.fromkeys(TEXT_EXTENSIONS, _read_text), ".ply": _read_ply, ".off": _read_off,
           ".npy": _read_npy}


def read_cloud(path: Path, cfg: PointCloudDataConfig) -> np.ndarray:
    """One cloud `[P, C]` float32 from `path`, checked and thinned to `data.max_points`.

    Raises:
        DataError: unknown extension, unreadable or malformed file, no points, NaN/inf, too few
            points; the message names the file.
    """
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported point-cloud extension '{path.suffix}'; supported: "
                        f"{', '.join(EXTENSIONS)} and .npz bundles")
    try:
        points = reader(path, cfg)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return check_cloud(points, str(path), cfg)


def check_cloud(points: np.ndarray, source: str, cfg: PointCloudDataConfig) -> np.ndarray:
    """`points` as float32, thinned to `max_points` (seeded by `source`); errors name `source`."""
    if points.shape[0] == 0:
        raise DataError(f"{source}: holds no points (empty cloud)")
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{source}: point {row} has a NaN or infinite coordinate "
                        f"({points[row].tolist()})")
    if points.shape[0] < cfg.min_points:
        raise DataError(f"{source}: {points.shape[0]} points, fewer than data.min_points="
                        f"{cfg.min_points} (lower data.min_points to keep it)")
    if points.shape[0] > cfg.max_points:
        seed = int.from_bytes(hashlib.blake2b(source.encode(), digest_size=4).digest(), "little")
        keep = np.random.default_rng(seed).choice(points.shape[0], cfg.max_points, replace=False)
        points = points[np.sort(keep)]
    return np.ascontiguousarray(points, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Many clouds


def read_clouds(files: list[LabelledFile], cfg: PointCloudDataConfig, source: str) -> list[Cloud]:
    """Every file read and checked; bad ones raise, or are skipped and counted (`on_error`)."""
    clouds, bad = [], []
    for f in files:
        try:
            clouds.append(Cloud(read_cloud(f.path, cfg), f.label, str(f.path), f.groups))
        except DataError as exc:
            if cfg.on_error != "skip":
                raise DataError(f"{exc} (set data.on_error=skip to leave such clouds out)") from None
            bad.append(str(exc))
    return _kept(clouds, bad, source)


def read_bundle(path: Path, cfg: PointCloudDataConfig) -> tuple[list[Cloud], list[str] | None]:
    """The clouds of a `.npz` bundle, and its `class_names` if it has them."""
    try:
        bundle = np.load(path, allow_pickle=False)
        arrays = {k: bundle[k] for k in bundle.files}
    except (ValueError, OSError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read the .npz bundle ({exc or 'empty file'})") from None
    for key in ("points", "offsets"):
        if key not in arrays:
            raise DataError(f"{path}: a bundle needs arrays 'points' and 'offsets' (and "
                            f"'labels'); it has {', '.join(arrays) or 'none'}")
    points, offsets = arrays["points"], arrays["offsets"].astype(np.int64)
    if points.ndim != 2 or points.shape[1] < 3:
        raise DataError(f"{path}: 'points' must be [P, >=3], got {list(points.shape)}")
    labels = arrays.get("labels")
    if labels is not None:
        n = len(labels)
    else:  # offsets are starts, or bounds when they end at the last point
        n = len(offsets) - int(len(offsets) > 0 and offsets[-1] == len(points))
    if len(offsets) == n:
        bounds = np.append(offsets, len(points))
    elif len(offsets) == n + 1:
        bounds = offsets
    else:
        raise DataError(f"{path}: {len(offsets)} offsets for {n} labels; expected {n} or {n + 1}")
    if (np.diff(bounds) < 0).any() or bounds[0] < 0 or bounds[-1] > len(points):
        raise DataError(f"{path}: offsets are not increasing within the {len(points)} points")
    names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
    if labels is not None and names is not None and len(labels):
        if labels.min() < 0 or labels.max() >= len(names):
            raise DataError(f"{path}: labels must index class_names (0..{len(names) - 1}); "
                            f"found {labels.min()}..{labels.max()}")
    ids = arrays.get("ids", np.arange(n))
    if len(ids) != n:
        raise DataError(f"{path}: {len(ids)} ids for {n} clouds")
    cols = _columns(cfg, names=False)
    if max(cols) >= points.shape[1]:
        raise DataError(f"{path}: data.columns {cols}; 'points' has {points.shape[1]} columns")
    clouds, bad = [], []
    for i in range(n):
        label = None
        if labels is not None:
            label = names[int(labels[i])] if names is not None else str(labels[i])
        source = f"{path}[id {ids[i]}]"
        try:
            cloud = check_cloud(points[bounds[i]:bounds[i + 1]][:, cols].astype(np.float64),
                                source, cfg)
        except DataError as exc:
            if cfg.on_error != "skip":
                raise DataError(f"{exc} (set data.on_error=skip to leave such clouds out)") from None
            bad.append(str(exc))
            continue
        clouds.append(Cloud(cloud, label, source, {"id": str(ids[i])}))
    return _kept(clouds, bad, str(path)), names


def _kept(clouds: list[Cloud], bad: list[str], source: str) -> list[Cloud]:
    if bad:
        log.warning("%s: skipped %d bad point clouds (data.on_error=skip), e.g. %s", source,
                    len(bad), bad[0])
    if not clouds:
        raise DataError(f"{source}: no readable point clouds")
    return clouds


# ---------------------------------------------------------------------------------------------
# Samples


def normalize(points: Tensor, steps: list[str]) -> Tensor:
    """Per-cloud normalisation of `points [..., P, C]` (xyz = first 3 columns), in order:
    `center` (subtract the mean), `unit_sphere` (divide by the largest norm), `height`
    (subtract the lowest z, so the ground sits at 0)."""
    xyz = points[..., :3]
    for step in steps:
        if step == "center":
            xyz = xyz - xyz.mean(dim=-2, keepdim=True)
        elif step == "unit_sphere":
            radius = xyz.norm(dim=-1).amax(dim=-1, keepdim=True).unsqueeze(-1)
            xyz = xyz / radius.clamp_min(1e-12)  # one repeated point stays at 0, not NaN
        elif step == "height":
            xyz = torch.cat([xyz[..., :2], xyz[..., 2:3] - xyz[..., 2:3].amin(-2, keepdim=True)], -1)
        else:
            raise ConfigError(f"data.normalize: '{step}' is not one of {', '.join(NORMALIZATIONS)}")
    return torch.cat([xyz, points[..., 3:]], dim=-1)


def fit_count(points: Tensor, n: int, generator: torch.Generator | None, method: str) -> Tensor:
    """`n` points of `points [P, C]`: FPS (from a random start with a generator, else point 0)
    or a random subset; clouds with `P < n` are resampled with replacement (all points, then
    random repeats)."""
    p = points.shape[0]
    if p == n:
        return points
    if p < n:
        extra = torch.randint(0, p, (n - p,), generator=generator or torch.Generator())
        return points[torch.cat([torch.arange(p), extra])]
    if method == "random" and generator is not None:
        return points[torch.randperm(p, generator=generator)[:n]]
    start = None
    if generator is not None:
        start = torch.randint(0, p, (1,), generator=generator)
    idx = farthest_point_sample(points[None, :, :3], n, start=start, use_pytorch3d=False)[0]
    return points[idx]


class PointClouds(Dataset):
    """Clouds as `(points [num_points, C] float32, label index)`; label -1 when unlabelled.

    `sample(i, generator)` is the training view (random subset or random-start FPS, then
    `normalize`); `[i]` the evaluation view (FPS from the first point, then `normalize`),
    computed once and cached.
    """

    def __init__(self, clouds: list[Cloud], class_names: list[str], num_points: int,
                 subsample: str = "random", steps: Sequence[str] = ("center", "unit_sphere")) -> None:
        if subsample not in SUBSAMPLING:
            raise ConfigError(f"data.subsample: '{subsample}' is not one of {', '.join(SUBSAMPLING)}")
        for step in steps:
            if step not in NORMALIZATIONS:
                raise ConfigError(f"data.normalize: '{step}' is not one of {', '.join(NORMALIZATIONS)}")
        if num_points < 1:
            raise ConfigError(f"data.num_points must be >= 1, got {num_points}")
        index: dict[str | None, int] = {name: i for i, name in enumerate(class_names)}
        self.clouds = [torch.from_numpy(c.points) for c in clouds]
        self.sources = [c.source for c in clouds]
        self.labels = torch.tensor([index.get(c.label, -1) for c in clouds], dtype=torch.long)
        self.num_points, self.subsample, self.steps = num_points, subsample, list(steps)
        self.num_resampled = sum(int(c.shape[0] < num_points) for c in self.clouds)
        self._eval: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.clouds)

    @property
    def channels(self) -> int:
        return self.clouds[0].shape[1]

    def sample_ids(self) -> list[str]:
        return list(self.sources)

    def sample(self, i: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        points = fit_count(self.clouds[i], self.num_points, generator, self.subsample)
        return normalize(points, self.steps), self.labels[i]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        view = self._eval.get(i)
        if view is None:
            view = normalize(fit_count(self.clouds[i], self.num_points, None, "fps"), self.steps)
            self._eval[i] = view
        return view, self.labels[i]
