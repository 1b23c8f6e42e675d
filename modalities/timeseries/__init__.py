"""Time-series modality: UCR/UEA `.ts`, wide/long tables and arrays; missing-value filling,
padding or resampling to one length, standardisation; patch tokens (channel-independent or
mixing, optional RevIN) and padding-aware patch masks; a cart-pole simulator with actions;
MiniRocket as the label-free baseline `polyjepa eval` probes beside the raw values."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from polyjepa.errors import DataError
from polyjepa.modalities.timeseries.augment import SeriesViews
from polyjepa.modalities.timeseries.baselines import minirocket
from polyjepa.modalities.timeseries.cartpole import CARTPOLE, STATE_NAMES, CartPoleConfig, generate
from polyjepa.modalities.timeseries.config import TimeSeriesDataConfig
from polyjepa.modalities.timeseries.control import control_protocol
from polyjepa.modalities.timeseries.forecast import forecast_protocol
from polyjepa.modalities.timeseries.maskers import PatchMasker
from polyjepa.modalities.timeseries.preprocess import (
    AUTO_SHORTEST,
    Scaler,
    SeriesArrays,
    check_channels,
    stretch_short,
    to_arrays,
    windows,
)
from polyjepa.modalities.timeseries.readers import SeriesSet, concat_sets, read_series, test_twin
from polyjepa.modalities.timeseries.synthetic import CLASS_NAMES, synthetic_series
from polyjepa.modalities.timeseries.tokenizer import PatchTokenizer
from polyjepa.paths import expand_pattern, resolve_path
from polyjepa.registry import ModalityPlugin
from polyjepa.targets import decide_task

T = TypeVar("T")
log = logging.getLogger(__name__)


def _subset(data: SeriesSet, index: np.ndarray) -> SeriesSet:
    """The series at `index`, with their labels, actions and names."""
    def pick(items: list[T]) -> list[T]:
        return [items[i] for i in index]

    def pick_optional(items: list[T] | None) -> list[T] | None:
        return None if items is None else pick(items)

    return replace(data, series=pick(data.series), labels=pick_optional(data.labels),
                   actions=pick_optional(data.actions), names=pick(data.names))


def _task(data: SeriesSet, cfg: TimeSeriesDataConfig) -> str:
    """`data.task`, with `auto` meaning regression for a source that declares targets."""
    return "regression" if cfg.task == "auto" and data.targets else cfg.task


def _split(data: SeriesSet, cfg: TimeSeriesDataConfig) -> tuple[SeriesSet, SeriesSet]:
    """A seeded split holding out `test_fraction`, stratified when labelled and possible."""
    index = np.arange(len(data.series))
    labels, stratify = data.labels, None
    if labels is not None and decide_task(labels, _task(data, cfg), data.source,
                                          announce=False) == "classification":
        stratify = labels if min(np.unique(labels, return_counts=True)[1]) > 1 else None
    train, test = train_test_split(index, test_size=cfg.test_fraction, random_state=cfg.split_seed,
                                   stratify=stratify)
    return _subset(data, np.sort(train)), _subset(data, np.sort(test))


def _cartpole(cfg: CartPoleConfig, num: int, seed: int, split: str) -> SeriesSet:
    """Simulated trajectories: the sensed states as channels, the applied force as the action."""
    data = generate(cfg, num, seed)
    return SeriesSet(series=list(data["observations"].astype(np.float32)), labels=None,
                     actions=list(data["actions"].astype(np.float32)),
                     channel_names=list(STATE_NAMES), action_names=["force"],
                     names=[f"cart-pole {split} trajectory {i}" for i in range(num)],
                     class_names=None, source=CARTPOLE)


def _read_sets(cfg: TimeSeriesDataConfig, root: Path | None) -> tuple[SeriesSet, SeriesSet]:
    if cfg.path == CARTPOLE:
        sim = cfg.cartpole
        return (_cartpole(sim, sim.train_trajectories, sim.seed, "training"),
                _cartpole(sim, sim.test_trajectories, sim.seed + 1, "test"))
    path = resolve_path(cfg.path, root, "data.path")
    train = read_series(path, cfg)
    if cfg.test_path is not None:
        return train, read_series(resolve_path(cfg.test_path, root, "data.test_path"), cfg)
    twin = test_twin(path)
    return (train, read_series(twin, cfg)) if twin is not None else _split(train, cfg)


def _class_names(train: SeriesSet, test: SeriesSet) -> list[str]:
    """Classes of the training series (in the file's declared order when it has one); a test
    class never seen in training is an error."""
    if train.labels is None:
        return []
    seen = set(train.labels)
    names = [c for c in train.class_names if c in seen] if train.class_names else sorted(seen)
    test_labels = test.labels or []
    unseen = sorted(set(test_labels) - seen)
    if unseen:
        example = test.names[test_labels.index(unseen[0])]
        raise DataError(f"test label(s) {unseen[:5]} never occur in training (e.g. {example})")
    return names


def _meta(train: SeriesSet, arrays: SeriesArrays, class_names: list[str] | None,
          scaler: Scaler) -> dict:
    n, c, t = arrays.values.shape
    return {"class_names": class_names or [], "num_classes": len(class_names or []),
            "task": "regression" if class_names is None else "classification", "channels": c,
            "length": t, "channel_names": list(train.channel_names),
            "action_names": list(train.action_names), "num_actions": len(train.action_names),
            "scaler": {"mode": scaler.mode,
                       "mean": None if scaler.mean is None else scaler.mean.tolist(),
                       "std": None if scaler.std is None else scaler.std.tolist()}}


def load_data(cfg: TimeSeriesDataConfig, root: Path | None) -> tuple[SeriesArrays, SeriesArrays, dict]:
    """`(train, test, meta)`: series read, filled, aligned to the longest training series (or
    `data.length`) and standardised with training statistics."""
    train, test = _read_sets(cfg, root)
    if cfg.window is not None:
        train, test = (windows(s, cfg.window, cfg.window_stride) for s in (train, test))
    check_channels([train, test])
    regression = train.labels is not None and decide_task(
        train.labels, _task(train, cfg), f"{train.source}: labels") == "regression"
    if cfg.task == "regression" and train.labels is None:
        raise DataError(f"{train.source}: data.task=regression, but the series carry no targets "
                        "(a .ts file with @targetLabel true, or data.label_column)")
    class_names = None if regression else _class_names(train, test)
    length = cfg.length or max(s.shape[1] for s in train.series)
    (train, short_train), (test, short_test) = (stretch_short(s, length, cfg.length_policy)
                                                for s in (train, test))
    if short_train or short_test:
        log.warning("data: %d of %d training and %d of %d test series are shorter than %d%% of "
                    "the length %d: stretched to %d steps by linear interpolation, the others "
                    "padded (data.length_policy=auto; pad or resample choose one rule for all)",
                    short_train, len(train.series), short_test, len(test.series),
                    round(100 * AUTO_SHORTEST), length, math.ceil(AUTO_SHORTEST * length))
    train_arrays, scaler = to_arrays(train, class_names, length, cfg.length_policy, None,
                                     cfg.standardize)
    test_arrays, _ = to_arrays(test, class_names, length, cfg.length_policy, scaler,
                               cfg.standardize)
    return train_arrays, test_arrays, _meta(train, train_arrays, class_names, scaler)


def load_file(cfg: TimeSeriesDataConfig, path: str, root: Path | None, meta: dict) -> SeriesArrays:
    """Series of another file (or of every file a glob pattern matches), aligned and scaled as
    the run's training data was."""
    data = concat_sets([read_series(resolve_path(p, root, "data"), cfg)
                        for p in expand_pattern(path, root, "data")])
    if cfg.window is not None:
        data = windows(data, cfg.window, cfg.window_stride)
    stats = meta["scaler"]
    scaler = Scaler(stats["mode"], *(None if stats[k] is None else np.asarray(stats[k], np.float32)
                                     for k in ("mean", "std")))
    channels = {s.shape[0] for s in data.series}
    if channels != {meta["channels"]}:
        raise DataError(f"{path}: {', '.join(map(str, sorted(channels)))} channels, the run was "
                        f"trained on {meta['channels']}")
    data, _ = stretch_short(data, meta["length"], cfg.length_policy)
    names: list[str] | None = None
    if meta.get("task") != "regression":
        names = list(meta["class_names"])
        names += sorted(set(data.labels or []) - set(names))
    arrays, _ = to_arrays(data, names, meta["length"], cfg.length_policy, scaler, scaler.mode)
    return arrays


def synthetic(n: int = 400, seed: int = 0) -> tuple[SeriesArrays, SeriesArrays, dict]:
    """Built-in series (see `synthetic.py`): 4 classes, 2 channels, lengths 48-64, split 80/20."""
    series, labels = synthetic_series(n, seed=seed)
    data = SeriesSet(series=series, labels=[CLASS_NAMES[k] for k in labels], actions=None,
                     channel_names=["0", "1"], action_names=[],
                     names=[f"synthetic series {i}" for i in range(n)], class_names=CLASS_NAMES,
                     source="synthetic")
    cut = int(0.8 * n)
    train, test = _subset(data, np.arange(cut)), _subset(data, np.arange(cut, n))
    cfg = TimeSeriesDataConfig()
    train_arrays, scaler = to_arrays(train, CLASS_NAMES, 64, cfg.length_policy, None, cfg.standardize)
    test_arrays, _ = to_arrays(test, CLASS_NAMES, 64, cfg.length_policy, scaler, cfg.standardize)
    return train_arrays, test_arrays, _meta(train, train_arrays, CLASS_NAMES, scaler)


def raw_features(dataset: SeriesArrays) -> torch.Tensor:
    """The raw-value baseline: every scaled series flattened (zero beyond its length),
    `[N, C * T]`."""
    return dataset.values.flatten(1)


plugin = ModalityPlugin(
    name="timeseries",
    data_config=TimeSeriesDataConfig,
    load_data=load_data,
    synthetic=synthetic,
    raw_features=raw_features,
    load_file=load_file,
    components={"patches": PatchTokenizer, "masks": PatchMasker, "views": SeriesViews},
    protocols={"forecast": forecast_protocol, "control": control_protocol},
    baselines={"minirocket": minirocket},
)
