"""Audio modality: wav/flac/ogg/mp3 readers, a torch log-mel frontend, BYOL-A and A-JEPA parts."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from polyjepa.errors import DataError
from polyjepa.files import group_targets, training_classes
from polyjepa.modalities.audio.augment import (
    BatchNormalize,
    MixupMemory,
    RandomLinearFader,
    RandomResizeCrop,
    TimeCrop,
)
from polyjepa.modalities.audio.encoders import AudioNTT2020, AudioNTT2022, SpectrogramPatches
from polyjepa.modalities.audio.frontend import LogMel
from polyjepa.modalities.audio.maskers import CurriculumMasker, TimeFrequencyMasker
from polyjepa.modalities.audio.official import import_byol_a
from polyjepa.modalities.audio.readers import (
    AudioArrays,
    AudioDataConfig,
    AudioFiles,
    ClipDataset,
    LogMelConfig,
    check_clips,
    list_clips,
    split_clips,
)
from polyjepa.modalities.audio.synthetic import CLASS_NAMES, synthetic_waves
from polyjepa.registry import ModalityPlugin

STATS_BATCH = 64


def audio_meta(cfg: AudioDataConfig, class_names: list[str], mean: float, std: float) -> dict:
    """Plain values factories ask for by name: log-mel settings and statistics, shapes, classes."""
    clip_samples = int(round(cfg.clip_seconds * cfg.sample_rate))
    return {
        "class_names": list(class_names),
        "num_classes": len(class_names),
        "sample_rate": cfg.sample_rate,
        "clip_samples": clip_samples,
        "n_mels": cfg.logmel.n_mels,
        "num_frames": 1 + clip_samples // cfg.logmel.hop_length,
        "logmel": asdict(cfg.logmel),
        "norm_mean": float(mean),
        "norm_std": float(std),
    }


def logmel_frontend(sample_rate: int, logmel: dict, norm_mean: float, norm_std: float) -> LogMel:
    """The log-mel frontend the data section describes, with the training set's statistics."""
    return LogMel.from_config(sample_rate, LogMelConfig(**logmel), norm_mean, norm_std)


logmel_frontend.kind = "frontend"  # type: ignore[attr-defined]


@torch.no_grad()
def logmel_stats(dataset: ClipDataset, frontend: LogMel, num_clips: int, seed: int) -> tuple[float, float]:
    """Mean and std of the log-mel values of `num_clips` seeded random training crops."""
    g = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(dataset), generator=g)[:num_clips].tolist()
    total = total_sq = count = 0.0
    for start in range(0, len(picks), STATS_BATCH):
        waves = torch.stack([dataset.sample(i, g)[0] for i in picks[start:start + STATS_BATCH]])
        lms = frontend(waves).double()
        total += lms.sum().item()
        total_sq += lms.square().sum().item()
        count += lms.numel()
    mean = total / count
    std = max((total_sq / count - mean**2), 0.0) ** 0.5
    if not std > 0:
        raise DataError(f"the log-mel values of {len(picks)} training crops are constant (all "
                        "silent?); cannot standardise them (set data.logmel.normalize=false)")
    return mean, std


def _finish(cfg: AudioDataConfig, train: ClipDataset, test: ClipDataset, class_names: list[str],
            seed: int) -> tuple[ClipDataset, ClipDataset, dict]:
    """Fit the log-mel statistics on `train` and attach the frontend for raw-feature probes."""
    mean, std = 0.0, 1.0
    if cfg.logmel.normalize:
        plain = LogMel.from_config(cfg.sample_rate, cfg.logmel)
        mean, std = logmel_stats(train, plain, cfg.logmel.norm_clips, seed)
    meta = audio_meta(cfg, class_names, mean, std)
    for dataset in (train, test):
        dataset.frontend_meta = meta
    return train, test, meta


def load_data(cfg: AudioDataConfig, root: Path | None) -> tuple[ClipDataset, ClipDataset, dict]:
    """`(train, test, meta)`: clips found, split, header-checked; log-mel statistics from train."""
    clips, splits = list_clips(cfg.path, cfg, root, "data.path")
    if cfg.test_path is not None:
        train_clips = clips
        test_clips, _ = list_clips(cfg.test_path, cfg, root, "data.test_path")
    else:
        train_clips, test_clips = split_clips(clips, splits, cfg, cfg.path)
    train_clips, train_frames = check_clips(train_clips, cfg.sample_rate, cfg.on_error,
                                            "training clips")
    test_clips, test_frames = check_clips(test_clips, cfg.sample_rate, cfg.on_error, "test clips")
    class_names = training_classes(train_clips, test_clips)
    train = AudioFiles(train_clips, train_frames, class_names, cfg.sample_rate, cfg.clip_seconds,
                       cfg.eval_crop, cfg.cache)
    test = AudioFiles(test_clips, test_frames, class_names, cfg.sample_rate, cfg.clip_seconds,
                      cfg.eval_crop, cfg.cache)
    train.targets, test.targets = group_targets(train_clips, test_clips, cfg.probe_groups)
    return _finish(cfg, train, test, class_names, cfg.split_seed)


def load_file(cfg: AudioDataConfig, path: str, root: Path | None, meta: dict) -> AudioFiles:
    """Clips of a folder or manifest, labelled with the run's classes (new labels appended)."""
    clips, _ = list_clips(path, cfg, root, "data")
    clips, frames = check_clips(clips, cfg.sample_rate, cfg.on_error, str(path))
    names = list(meta["class_names"])
    names += sorted({c.label for c in clips if c.label is not None} - set(names))
    dataset = AudioFiles(clips, frames, names, cfg.sample_rate, cfg.clip_seconds, cfg.eval_crop,
                         cfg.cache)
    dataset.frontend_meta = meta
    return dataset


def synthetic(n: int = 500, seed: int = 0) -> tuple[ClipDataset, ClipDataset, dict]:
    """Built-in synthetic sounds (see `synthetic.py`), 1.2 s at 16 kHz, split 80/20."""
    cfg = AudioDataConfig(path="synthetic", logmel=LogMelConfig(norm_clips=200))
    waves, labels = synthetic_waves(n, cfg.sample_rate, seed=seed)
    cut = int(0.8 * n)
    train = AudioArrays(waves[:cut], labels[:cut], cfg.sample_rate, cfg.clip_seconds)
    test = AudioArrays(waves[cut:], labels[cut:], cfg.sample_rate, cfg.clip_seconds)
    return _finish(cfg, train, test, CLASS_NAMES, seed)


@torch.no_grad()
def raw_features(dataset: ClipDataset) -> torch.Tensor:
    """The raw log-mel baseline: per mel bin, mean and std over time of the (standardised)
    log-mel of each clip's evaluation view, `[N, 2 * n_mels]`."""
    frontend = logmel_frontend(**{k: dataset.frontend_meta[k] for k in
                                  ("sample_rate", "logmel", "norm_mean", "norm_std")})
    rows = []
    for start in range(0, len(dataset), STATS_BATCH):
        waves = torch.stack([dataset[i][0] for i in range(start, min(start + STATS_BATCH, len(dataset)))])
        lms = frontend(waves)[:, 0]  # [B, F, T]
        rows.append(torch.cat([lms.mean(-1), lms.std(-1)], dim=1))
    return torch.cat(rows)


plugin = ModalityPlugin(
    name="audio",
    data_config=AudioDataConfig,
    load_data=load_data,
    synthetic=synthetic,
    raw_features=raw_features,
    load_file=load_file,
    components={
        "logmel": logmel_frontend,
        "audiontt2020": AudioNTT2020,
        "audiontt2022": AudioNTT2022,
        "patches": SpectrogramPatches,
        "mixup": MixupMemory,
        "random_resize_crop": RandomResizeCrop,
        "linear_fader": RandomLinearFader,
        "time_crop": TimeCrop,
        "post_normalize": BatchNormalize,
        "time_frequency": TimeFrequencyMasker,
        "curriculum": CurriculumMasker,
    },
    importers={"byol_a_official": import_byol_a},
)
