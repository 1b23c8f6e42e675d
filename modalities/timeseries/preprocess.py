"""From series as read (`SeriesSet`, any lengths, NaN = missing) to aligned, scaled tensors.

Order: missing values are interpolated within each channel; every series is brought to one
length (padding at the end with a recorded valid length, or resampling); channels are
standardised per series or with training statistics.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyjepa.errors import ConfigError, DataError
from polyjepa.modalities.timeseries.readers import SeriesSet
from polyjepa.targets import as_targets, is_regression

log = logging.getLogger(__name__)

LENGTH_POLICIES = ("auto", "pad", "resample")
AUTO_SHORTEST = 0.2
"""`auto` stretches a series shorter than this share of the length to it: a tokenizer cutting the
length into up to 10 patches then finds at least 2 in every series, which masking needs."""
STANDARDIZE = ("per_series", "per_dataset", "none")
EPS = 1e-8


def fill_missing(series: np.ndarray, name: str) -> np.ndarray:
    """`[C, T]` with NaNs replaced by linear interpolation of their channel's observed values
    (held constant beyond the first and last observation).

    Raises:
        DataError: a channel has no observed value; the message names the series and channel.
    """
    observed = np.isfinite(series)
    if observed.all():
        return series
    out = series.copy()
    steps = np.arange(series.shape[1])
    for c in np.flatnonzero(~observed.all(1)):
        if not observed[c].any():
            raise DataError(f"{name}: channel {c} has no observed value (all missing); drop "
                            "the channel or the series")
        out[c] = np.interp(steps, steps[observed[c]], series[c, observed[c]])
    return out


def resample(series: np.ndarray, length: int) -> np.ndarray:
    """`[C, T]` -> `[C, length]` by linear interpolation over the same time span."""
    t = series.shape[1]
    if t == length:
        return series
    if t == 1:
        return np.repeat(series, length, axis=1)
    grid = np.linspace(0, t - 1, length)
    return np.stack([np.interp(grid, np.arange(t), channel) for channel in series])


def align(series: list[np.ndarray], length: int, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """Series of any lengths -> `[N, C, length]` float32 and their valid lengths `[N]`.

    `pad`: longer series are cut, shorter ones padded with zeros at the end (valid length =
    their own); `resample`: every series interpolated to `length` (valid length = `length`);
    `auto`: `pad` (its short series were stretched first: `stretch_short`).
    """
    if policy not in LENGTH_POLICIES:
        raise ConfigError(f"data.length_policy: '{policy}' is not one of {', '.join(LENGTH_POLICIES)}")
    out = np.zeros((len(series), series[0].shape[0], length), dtype=np.float32)
    lengths = np.empty(len(series), dtype=np.int64)
    for i, s in enumerate(series):
        if policy == "resample":
            out[i], lengths[i] = resample(s, length), length
        else:
            t = min(s.shape[1], length)
            out[i, :, :t], lengths[i] = s[:, :t], t
    return out, lengths


def stretch_short(data: SeriesSet, length: int, policy: str) -> tuple[SeriesSet, int]:
    """`length_policy=auto`: every series shorter than `AUTO_SHORTEST` of `length` stretched to
    that share by linear interpolation (its actions too); returns the set and how many were."""
    shortest = min(math.ceil(AUTO_SHORTEST * length), length)
    short = {i for i, s in enumerate(data.series) if s.shape[1] < shortest}
    if policy != "auto" or not short:
        return data, 0
    def fix(items: list[np.ndarray]) -> list[np.ndarray]:
        return [resample(s, shortest) if i in short else s for i, s in enumerate(items)]
    return replace(data, series=fix(data.series),
                   actions=None if data.actions is None else fix(data.actions)), len(short)


def valid_steps(lengths: np.ndarray, length: int) -> np.ndarray:
    """`[N, length]` bool, True on the steps a series really has."""
    return np.arange(length)[None] < lengths[:, None]


@dataclass
class Scaler:
    """Per-channel standardisation: `per_dataset` with training `mean`/`std` `[C]`, or
    `per_series` (each series' own statistics), or `none`."""

    mode: str
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    @classmethod
    def fit(cls, mode: str, values: np.ndarray, lengths: np.ndarray) -> Scaler:
        """Statistics of the valid steps of training `values [N, C, T]`."""
        if mode not in STANDARDIZE:
            raise ConfigError(f"data.standardize: '{mode}' is not one of {', '.join(STANDARDIZE)}")
        if mode != "per_dataset":
            return cls(mode)
        valid = valid_steps(lengths, values.shape[2])[:, None]  # [N, 1, T]
        count = valid.sum((0, 2))
        mean = (values * valid).sum((0, 2)) / count
        var = (((values - mean[None, :, None]) ** 2) * valid).sum((0, 2)) / count
        return cls(mode, mean.astype(np.float32), np.sqrt(var).astype(np.float32))

    def __call__(self, values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Scaled `values [N, C, T]`; padding stays zero."""
        valid = valid_steps(lengths, values.shape[2])[:, None]
        if self.mode == "none":
            return values
        if self.mode == "per_dataset":
            if self.mean is None or self.std is None:
                raise ValueError("a per_dataset Scaler needs the training mean and std (Scaler.fit)")
            mean, std = self.mean[None, :, None], self.std[None, :, None]
        else:
            count = valid.sum(2, keepdims=True)
            mean = (values * valid).sum(2, keepdims=True) / count
            std = np.sqrt((((values - mean) ** 2) * valid).sum(2, keepdims=True) / count)
        return np.where(valid, (values - mean) / (std + EPS), 0.0).astype(np.float32)


class SeriesArrays(Dataset):
    """Aligned series as `({"values": [C, T], "length": [], ("actions": [A, T])}, label)`.

    Attributes:
        values: `[N, C, T]` float32, scaled, zero beyond each series' length.
        lengths: `[N]` valid steps per series.
        actions: `[N, A, T]` float32 or None.
        labels: `[N]` long class indices, -1 where unlabelled; or float regression targets,
            NaN where unlabelled.
    """

    def __init__(self, values: np.ndarray, lengths: np.ndarray, labels: np.ndarray,
                 actions: np.ndarray | None = None) -> None:
        self.values = torch.from_numpy(values)
        self.lengths = torch.from_numpy(lengths)
        self.labels = torch.as_tensor(labels, dtype=torch.float32 if is_regression(labels)
                                      else torch.long)
        self.actions = None if actions is None else torch.from_numpy(actions)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> tuple[dict[str, Tensor], Tensor]:
        x = {"values": self.values[i], "length": self.lengths[i]}
        if self.actions is not None:
            x["actions"] = self.actions[i]
        return x, self.labels[i]


def check_channels(sets: list[SeriesSet]) -> None:
    """Every series of every set has the first one's channel (and action) count."""
    first = sets[0]
    want = (first.series[0].shape[0], 0 if first.actions is None else first.actions[0].shape[0])
    for s in sets:
        for i, series in enumerate(s.series):
            got = (series.shape[0], 0 if s.actions is None else s.actions[i].shape[0])
            if got != want:
                raise DataError(f"{s.names[i]}: {got[0]} channels and {got[1]} actions, but "
                                f"{first.names[0]} has {want[0]} and {want[1]}; every series "
                                "needs the same channels")


def windows(data: SeriesSet, window: int, stride: int | None) -> SeriesSet:
    """Every series cut into windows of `window` steps every `stride` (default `window`) steps;
    a window keeps its series' label and actions, a series shorter than `window` stays whole."""
    stride = window if stride is None else stride
    if window < 1 or stride < 1:
        raise ConfigError(f"data.window and data.window_stride must be >= 1, got {window}, {stride}")
    series, actions, labels, names = [], [], [], []
    for i, s in enumerate(data.series):
        for start in range(0, max(s.shape[1] - window, 0) + 1, stride):
            cut = slice(start, start + window)
            series.append(s[:, cut])
            names.append(f"{data.names[i]} [{start}:{start + min(window, s.shape[1])}]")
            if data.actions is not None:
                actions.append(data.actions[i][:, cut])
            if data.labels is not None:
                labels.append(data.labels[i])
    return replace(data, series=series, names=names,
                   actions=actions if data.actions is not None else None,
                   labels=labels if data.labels is not None else None)


def to_arrays(data: SeriesSet, class_names: list[str] | None, length: int, policy: str,
              scaler: Scaler | None, mode: str) -> tuple[SeriesArrays, Scaler]:
    """Fill, align and scale one set; fits the scaler (`mode`) when none is given (training).
    Labels become indices into `class_names`, or regression targets when it is None."""
    series = [fill_missing(s, name) for s, name in zip(data.series, data.names, strict=True)]
    values, lengths = align(series, length, policy)
    actions = None
    if data.actions is not None:
        filled = [fill_missing(a, f"{name} (actions)") for a, name in zip(data.actions, data.names,
                                                                          strict=True)]
        actions, _ = align(filled, length, policy)
    scaler = scaler or Scaler.fit(mode, values, lengths)
    if class_names is None:
        labels = as_targets(data.labels or [None] * len(series), f"{data.source}: labels")
    else:
        index = {name: k for k, name in enumerate(class_names)}
        labels = (np.full(len(series), -1) if data.labels is None
                  else np.array([index.get(label, -1) for label in data.labels]))
    return SeriesArrays(scaler(values, lengths), lengths, labels, actions), scaler
