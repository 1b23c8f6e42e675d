"""Seeded, resumable batching: every random choice of a batch derives from one batch seed.

The batch sampler draws a permutation from `(seed, epoch)` and tags each batch with a seed from
`(seed, epoch, batch index, rank)` and its position (micro-batches since the start of training).
The collate samples masks and augmentations from a generator seeded with it; a dataset with a
`sample(index, generator)` method (random crops) gets a generator seeded from it and the index.
A batch's content is therefore a function of its position alone: the same with 0 or N workers,
and a resumed run replays exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, Sampler, default_collate

from polyjepa.contracts import (
    Augmentation,
    HasProbeTargets,
    Identified,
    Labelled,
    Masker,
    Sampled,
    conform,
)
from polyjepa.errors import DataError
from polyjepa.targets import is_regression
from polyjepa.types import Batch


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix-style mixing; stable across runs and platforms)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h >> 1


def fitting_batch_size(batch_size: int, num_samples: int, key: str, world_size: int = 1) -> int:
    """`batch_size`, or the samples each process has when they are fewer (with one warning that
    names `key`): a small dataset trains with batches of all of it instead of failing.

    Raises:
        DataError: fewer samples than processes.
    """
    per_rank = num_samples // world_size
    if per_rank < 1:
        raise DataError(f"{num_samples} training samples for {world_size} processes; give more "
                        "data or fewer processes (--nproc)")
    if batch_size > per_rank:
        warnings.warn(f"{key}={batch_size} is larger than the {per_rank} training samples"
                      f"{' per process' if world_size > 1 else ''}: batches of {per_rank} "
                      f"instead (set {key} to silence this)", stacklevel=2)
        return per_rank
    return batch_size


class SeededBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields batches `[(index, batch_seed, position), ...]` of a seeded per-epoch permutation.

    With `world_size > 1` each rank takes every `world_size`-th index of the same permutation
    (DistributedSampler's layout). Incomplete last batches are dropped. `start_batch` skips the
    first batches of the current epoch (resume).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        per_rank = num_samples // world_size
        if per_rank < batch_size:
            raise ValueError(f"a batch of {batch_size} is larger than the {per_rank} samples per "
                             "process (fitting_batch_size caps it)")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    def __len__(self) -> int:
        return (self.num_samples // self.world_size) // self.batch_size

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        order = torch.randperm(self.num_samples, generator=g)
        mine = order[self.rank : self.world_size * (self.num_samples // self.world_size) : self.world_size]
        for b in range(self.start_batch, len(self)):
            batch_seed = _mix(self.seed, self.epoch, b, self.rank)
            idx = mine[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            position = self.epoch * len(self) + b
            yield [(i, batch_seed, position) for i in idx]


ON_ERROR = ("raise", "skip")
DATA_ERRORS = (DataError, OSError, EOFError, UnicodeDecodeError)
"""Exceptions that mean a sample's data is bad (a truncated or undecodable file), which
`data.on_error=skip` skips; readers turn their decoders' own errors into `DataError`."""


class SeededDataset(Dataset):
    """Wraps a dataset of `(x, y)` so that `ds[(i, seed, position)] -> ((x, y), seed, position)`.

    A dataset with a `sample(index, generator)` method (e.g. random crops) is read through it,
    with a generator seeded from the batch seed and the index.

    A sample that fails to load (`DATA_ERRORS`: the data's fault, not the code's) raises a
    `DataError` naming the sample (and, through the dataset's own message, the file) with
    `on_error="raise"`; with `"skip"` it becomes None, and the collate drops and counts it. Any
    other exception (an `IndexError`, a `TypeError`: a bug in the dataset) propagates as it is,
    with its traceback, under either policy.
    """

    def __init__(self, dataset: Dataset, on_error: str = "raise") -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"data.on_error must be 'raise' or 'skip', got '{on_error}'")
        self.dataset, self.on_error = dataset, on_error
        # checked once: a runtime protocol check costs microseconds, per sample it adds up (a
        # split of a dataset without random crops needs no generator either)
        self.sampled = (dataset.parent_sampled if isinstance(dataset, DataSplit)
                        else isinstance(dataset, Sampled))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[Any, int, int]:
        index, seed, position = key
        try:
            if not self.sampled:
                return self.dataset[index], seed, position
            generator = torch.Generator().manual_seed(_mix(seed, index))
            return self.dataset.sample(index, generator), seed, position  # type: ignore[attr-defined]
        except DATA_ERRORS as exc:
            if self.on_error == "skip":
                return None, seed, position
            raise DataError(f"training sample {index} failed to load: {exc} "
                            "(set data.on_error=skip to skip such samples)") from exc


class Collate:
    """Stacks `(x, y)` samples into a `Batch` and samples its masks and views.

    Args:
        masker: `(batch_size, generator) -> Masks`, for JEPA objectives; a masker with a true
            `reads_input` attribute is called `(x, generator)` with the batched raw input
            instead, to draw around what the input holds (padding at the end of short series).
        augmentations: applied in order to the batched input to make each view (BYOL), or to
            the input itself when `num_views` is 0 (JEPA: one augmented view, then masked).
        num_views: views to make when `augmentations` is given.
        local_augmentations: the chain of the views after the first `num_global_views` (LeJEPA's
            local views, e.g. smaller crops); the views keep that order in `Batch.views`.
        num_global_views: views made by `augmentations` when `local_augmentations` is given.
    """

    def __init__(self, masker: Masker | None = None,
                 augmentations: Sequence[Augmentation] = (), num_views: int = 2,
                 local_augmentations: Sequence[Augmentation] = (),
                 num_global_views: int | None = None) -> None:
        self.masker = None if masker is None else conform(masker, "masker", "masker")
        self.augmentations = [conform(a, "augmentation", "augmentations") for a in augmentations]
        self.local_augmentations = [conform(a, "augmentation", "local_augmentations")
                                    for a in local_augmentations]
        self.num_views = num_views
        self.num_global_views = num_views if num_global_views is None else num_global_views

    def __call__(self, items: list[tuple[Any, int, int]]) -> Batch:
        samples = [sample for sample, _, _ in items if sample is not None]
        if not samples:
            raise DataError(f"all {len(items)} samples of a batch failed to load (data.on_error=skip)")
        _, seed, position = items[0]
        g = torch.Generator().manual_seed(seed)
        x, y = default_collate(samples)
        masks = None
        if self.masker is not None:
            if self.masker.reads_input:
                masks = self.masker(x, g)
            elif self.masker.progressive:
                masks = self.masker(len(samples), g, position)
            else:
                masks = self.masker(len(samples), g)
        views = []
        if self.augmentations and not self.num_views:
            for augment in self.augmentations:
                x = augment(x, g)
        elif self.augmentations:
            for i in range(self.num_views):
                chain = (self.augmentations if i < self.num_global_views or not
                         self.local_augmentations else self.local_augmentations)
                view = x
                for augment in chain:
                    view = augment(view, g)
                views.append(view)
        return Batch(x=x, y=labels_tensor(y), masks=masks, views=views,
                     skipped=len(items) - len(samples), seed=seed)


def eval_collate(samples: list[Any]) -> Batch:
    """Collate for embedding: no masks, no views."""
    x, y = default_collate(samples)
    return Batch(x=x, y=labels_tensor(y))


def labels_tensor(y: Any) -> torch.Tensor:
    """Collated labels `[B]`: int64 class indices, or float32 regression targets."""
    y = torch.as_tensor(y)
    return y.float() if y.is_floating_point() else y.long()


def dataset_labels(dataset: Any) -> np.ndarray:
    """Labels `[N]` of a dataset: its `labels` when `Labelled`, else read sample by sample;
    int64 class indices, or float32 targets for regression (`polyjepa.targets`)."""
    if isinstance(dataset, Labelled):
        y = np.asarray(dataset.labels).reshape(-1)
    else:
        y = np.asarray([np.asarray(dataset[i][1]).item() for i in range(len(dataset))])
    return y.astype(np.float32) if is_regression(y) else y.astype(np.int64)


def sample_ids(dataset: Any) -> list[str]:
    """Ids `[N]` of a dataset's samples: its own when `Identified`, else their positions."""
    if isinstance(dataset, Identified):
        return list(dataset.sample_ids())
    return [str(i) for i in range(len(dataset))]


class DataSplit(Dataset):
    """The samples `indices` of `parent`, e.g. the training split without its validation part.

    Reads through the parent's `sample(index, generator)` (random crops) when it has one, and
    slices its labels and its `probe_targets()`; modality-specific attributes stay on `parent`.
    """

    def __init__(self, parent: Any, indices: Sequence[int] | np.ndarray) -> None:
        self.parent = parent
        self.parent_sampled = isinstance(parent, Sampled)  # once, not per sample
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = dataset_labels(parent)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.parent[int(self.indices[i])]

    def sample(self, i: int, generator: torch.Generator) -> Any:
        index = int(self.indices[i])
        if self.parent_sampled:
            return self.parent.sample(index, generator)
        return self.parent[index]

    def probe_targets(self) -> dict[str, np.ndarray]:
        if not isinstance(self.parent, HasProbeTargets):
            return {}
        return {k: np.asarray(v)[self.indices] for k, v in self.parent.probe_targets().items()}

    def sample_ids(self) -> list[str]:
        ids = sample_ids(self.parent)
        return [ids[i] for i in self.indices]


class PretrainingSet(Dataset):
    """The samples pretraining reads: the labelled training split, then each unlabelled pool
    (`data.unlabelled`) in order. Every sample is `(x, -1)`: pretraining takes no labels, and
    the pools have none. Reads through each part's `sample(index, generator)` where it has one.

    Args:
        parts: datasets of `(x, y)` with samples of one shape, the training split first.
    """

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)
        self.sampled = [p.parent_sampled if isinstance(p, DataSplit) else isinstance(p, Sampled)
                        for p in self.parts]
        self.ends = np.cumsum([len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _locate(self, i: int) -> tuple[int, int]:
        part = int(np.searchsorted(self.ends, i, side="right"))
        return part, i - (int(self.ends[part - 1]) if part else 0)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        part, index = self._locate(i)
        return self.parts[part][index][0], -1

    def sample(self, i: int, generator: torch.Generator) -> tuple[Any, int]:
        part, index = self._locate(i)
        if not self.sampled[part]:
            return self.parts[part][index][0], -1
        return self.parts[part].sample(index, generator)[0], -1


def whole(dataset: Any) -> Any:
    """The dataset a `DataSplit` was cut from (itself otherwise)."""
    return dataset.parent if isinstance(dataset, DataSplit) else dataset


def carve_validation(dataset: Any, fraction: float, seed: int) -> tuple[DataSplit, DataSplit]:
    """`(rest, validation)`: `fraction` of `dataset` held out, stratified by label where every
    class has at least two samples (uniform otherwise, and for regression targets), seeded.

    Raises:
        DataError: the dataset is too small to hold out one sample and keep one.
    """
    n = len(dataset)
    size = max(1, int(round(fraction * n)))
    if size >= n:
        raise DataError(f"data.val_fraction={fraction} leaves no training sample of {n}; lower it")
    y = dataset_labels(dataset)
    classes, counts = np.unique(y, return_counts=True)
    stratify = y if (not is_regression(y) and counts.min() >= 2
                     and len(classes) <= size <= n - len(classes)) else None
    rest, val = train_test_split(np.arange(n), test_size=size, random_state=seed, stratify=stratify)
    return DataSplit(dataset, np.sort(rest)), DataSplit(dataset, np.sort(val))
