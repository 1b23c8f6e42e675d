"""Images for polyjepa: read, split, standardise.

Sources (`data.path`): a folder with one sub-folder per class of PNG/JPEG/BMP files (or a CSV
manifest `path,label[,split]`: polyjepa's file layouts); an IDX image file (MNIST's format,
`*-images-idx3-ubyte[.gz]`, its labels in the `*-labels-idx1-ubyte[.gz]` beside it); or an
`.npz` with `x` `[N, H, W(, C)]` and optional `y` `[N]`. Every image is resized to
`data.size` x `data.size`, read as `data.channels` (1: grey, 3: RGB) and standardised per
channel with the training split's statistics.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from polyjepa.errors import DataError
from polyjepa.files import FileDataConfig, list_files, split_files
from polyjepa.paths import resolve_path

IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".bmp"]


@dataclass
class ImageDataConfig(FileDataConfig):
    """The `data:` section of an image recipe (file layouts and splits: `FileDataConfig`)."""

    extensions: list[str] = field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    size: int = 28  # every image is resized to size x size
    channels: int = 1  # 1: grey, 3: RGB


class Images(Dataset):
    """`(image [C, S, S] float32, standardised, label index)`; label -1 when unlabelled."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, mean: list[float],
                 std: list[float], ids: list[str]) -> None:
        x = torch.from_numpy(pixels).float().div_(255.0)  # [N, C, S, S]
        mean_t, std_t = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
        self.x = (x - mean_t) / std_t
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.ids = ids

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.labels[i]

    def sample_ids(self) -> list[str]:
        return list(self.ids)


# ---------------------------------------------------------------------------------------------
# reading


def _resize(image: Image.Image, cfg: ImageDataConfig) -> np.ndarray:
    image = image.convert("L" if cfg.channels == 1 else "RGB").resize((cfg.size, cfg.size))
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # [C, S, S]


def _from_arrays(x: np.ndarray, cfg: ImageDataConfig, source: str) -> np.ndarray:
    """`[N, H, W(, C)]` uint8-range arrays -> `[N, C, S, S]` uint8."""
    if x.ndim not in (3, 4) or len(x) == 0:
        raise DataError(f"{source}: expected images [N, H, W] or [N, H, W, C], got shape "
                        f"{list(x.shape)}")
    if np.issubdtype(x.dtype, np.floating) and x.size and float(np.nanmax(x)) <= 1.0:
        x = x * 255.0  # images stored in [0, 1]
    x = np.clip(x, 0, 255).astype(np.uint8)
    return np.stack([_resize(Image.fromarray(img), cfg) for img in x])


def _open(path: Path) -> bytes:
    return gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format) as an array: magic `0x00 0x00 dtype ndim`, big-endian
    int32 dimensions, then the values."""
    raw = _open(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    values = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(dims)):
        raise DataError(f"{path}: {values.size} values for dimensions {dims.tolist()} "
                        "(truncated file?)")
    return values.reshape(dims)


def _idx_labels(images: Path) -> Path | None:
    name = images.name.replace("images-idx3", "labels-idx1")
    labels = images.with_name(name)
    return labels if labels.is_file() and labels != images else None


def read_source(cfg: ImageDataConfig, spec: str, root: Path | None, field: str
                ) -> tuple[list[tuple[np.ndarray, str | None, str]], list[str | None]]:
    """Items `(pixels [C, S, S], label or None, id)` of a source, and its manifest splits."""
    path = resolve_path(spec, root, field) if spec else None
    if path is not None and path.is_file() and "idx3-ubyte" in path.name:
        pixels = _from_arrays(read_idx(path), cfg, str(path))
        labels_file = _idx_labels(path)
        labels = read_idx(labels_file) if labels_file else [None] * len(pixels)
        if len(labels) != len(pixels):
            raise DataError(f"{labels_file}: {len(labels)} labels for {len(pixels)} images")
        items = [(p, None if y is None else str(int(y)), f"{path.name}#{i}")
                 for i, (p, y) in enumerate(zip(pixels, labels, strict=True))]
        return items, [None] * len(items)
    if path is not None and path.suffix == ".npz":
        with np.load(path) as bundle:
            if "x" not in bundle:
                raise DataError(f"{path}: an image bundle holds `x` [N, H, W(, C)] (and `y`)")
            pixels = _from_arrays(bundle["x"], cfg, str(path))
            labels = bundle["y"] if "y" in bundle else [None] * len(pixels)
        if len(labels) != len(pixels):
            raise DataError(f"{path}: {len(labels)} labels `y` for {len(pixels)} images `x`")
        items = [(p, None if y is None else str(y), f"{path.name}#{i}")
                 for i, (p, y) in enumerate(zip(pixels, labels, strict=True))]
        return items, [None] * len(items)
    files, splits = list_files(spec, cfg, root, field, "images")
    items = []
    for f in files:
        try:
            with Image.open(f.path) as image:
                items.append((_resize(image, cfg), f.label, str(f.path)))
        except OSError as exc:
            raise DataError(f"{f.path}: cannot read the image ({exc})") from None
    return items, splits


@dataclass
class _Item:
    """What `split_files` needs of an item: its label and groups."""

    pixels: np.ndarray
    label: str | None
    id: str
    groups: dict = field(default_factory=dict)


def split(items: list, splits: list[str | None], cfg: ImageDataConfig, source: str):
    """Train and test items: polyjepa's file splitting (manifest column, `test_groups`, or a
    seeded stratified split of `test_fraction`)."""
    return split_files([_Item(*item) for item in items], splits, cfg, source)


def statistics(items: list[_Item]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the training pixels (scaled to [0, 1])."""
    x = np.stack([w.pixels for w in items]).astype(np.float64) / 255.0  # [N, C, S, S]
    mean = x.mean(axis=(0, 2, 3)).tolist()
    std = [max(s, 1e-6) for s in x.std(axis=(0, 2, 3)).tolist()]
    return mean, std


def to_dataset(items: list[_Item], class_names: list[str], mean: list[float],
               std: list[float]) -> Images:
    index = {name: i for i, name in enumerate(class_names)}
    pixels = np.stack([w.pixels for w in items])
    labels = np.array([index.get(w.label, -1) for w in items], dtype=np.int64)
    return Images(pixels, labels, mean, std, [w.id for w in items])
