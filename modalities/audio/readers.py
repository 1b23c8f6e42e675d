"""Find audio clips and their labels, decode them, and cut fixed-length crops.

Three layouts, all giving a list of `Clip(path, label, groups)`:

* a folder with one sub-folder per class (`dog/1.wav`, `cat/7.flac`);
* a folder of files whose names carry the label, read with `data.label_regex` (a named group
  `label`; other named groups, e.g. FSDD's `speaker` and `index`, can split train from test
  through `data.test_groups`);
* a CSV manifest with the columns `path,label[,split]` (paths relative to the manifest).

Clips are decoded lazily with soundfile (every format the installed libsndfile reads), averaged
to mono and resampled with librosa's soxr backend. Headers are checked when the dataset is built,
so a corrupt or empty file is reported by name before training starts. For training, each sample
is a random crop of `clip_seconds` (short clips are centre-padded with silence), drawn from a
generator the batch seed gives; for evaluation, the centre crop, or the whole clip padded to the
longest of the split.
"""

from __future__ import annotations

import abc
import csv
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyjepa.errors import ConfigError, DataError
from polyjepa.paths import resolve_path

EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf")
EVAL_CROPS = ("center", "full")
SPLITS = ("train", "test")


@dataclass
class LogMelConfig:
    """Log-mel settings (`data.logmel`): `torch.stft` power spectrogram, a librosa filterbank,
    `log(x + eps)`, then standardisation with the training set's mean and std."""

    n_mels: int = 64
    n_fft: int = 1024
    win_length: int | None = None  # None -> n_fft
    hop_length: int = 160
    f_min: float = 60.0
    f_max: float | None = 7800.0  # None -> sample_rate / 2
    mel_scale: str = "htk"  # htk (torchaudio's default, BYOL-A) | slaney (librosa's default)
    mel_norm: str | None = None  # None (torchaudio's default) | slaney (area-normalised)
    normalize: bool = True  # standardise with training-set statistics (BYOL-A pre-normalisation)
    norm_clips: int = 1000  # training crops (seeded sample) the statistics are computed on


@dataclass
class AudioDataConfig:
    """The `data:` section of an audio recipe."""

    # A folder (one sub-folder per class, or files labelled by `label_regex`) or a CSV manifest
    # `path,label[,split]`; relative paths are looked up under the data root.
    path: str = ""
    # Held-out folder or manifest; None -> the manifest's `split` column, `test_groups`, or a
    # seeded stratified split of `path` holding out `test_fraction`.
    test_path: str | None = None
    # Regular expression matched against each file name; its named group `label` is the class.
    label_regex: str | None = None
    # Held-out clips by regex group value, e.g. {index: ["0", "1", "2", "3", "4"]}.
    test_groups: dict[str, list[str]] | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    sample_rate: int = 16000  # every clip is resampled to this rate (Hz)
    clip_seconds: float = 0.95  # length of the crops the encoder sees
    eval_crop: str = "center"  # center | full (whole clips, padded to the longest of the split)
    extensions: list[str] = field(default_factory=lambda: list(EXTENSIONS))
    on_error: str = "raise"  # a clip that fails to decode during training: raise | skip
    cache: bool = True  # keep decoded, resampled clips in memory (per worker)
    logmel: LogMelConfig = field(default_factory=LogMelConfig)


@dataclass
class Clip:
    """One audio file: its path, class name (None when unlabelled) and regex groups."""

    path: Path
    label: str | None
    groups: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Finding clips


def list_clips(spec: str, cfg: AudioDataConfig, root: Path | None,
               field_name: str) -> tuple[list[Clip], list[str | None]]:
    """Clips of a folder or manifest, and the manifest's split column (None per clip otherwise).

    Raises:
        DataError: the path is missing, holds no audio, a file name does not match
            `label_regex`, or a manifest row is malformed; each names the file (and row).
    """
    if not spec:
        raise DataError(f"{field_name}: set it to a folder of audio files or a CSV manifest")
    path = resolve_path(spec, root, field_name)
    if path.is_file():
        if path.suffix.lower() not in (".csv", ".tsv"):
            raise DataError(f"{field_name}: {path} is a file but not a CSV manifest "
                            "(path,label[,split]); give a folder or a .csv")
        return _read_manifest(path, cfg)
    clips = _folder_clips(path, cfg, field_name)
    return clips, [None] * len(clips)


def _extensions(cfg: AudioDataConfig) -> tuple[str, ...]:
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in cfg.extensions)


def _folder_clips(folder: Path, cfg: AudioDataConfig, field_name: str) -> list[Clip]:
    exts = _extensions(cfg)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        seen = sorted({p.suffix for p in folder.rglob("*") if p.is_file()})[:10]
        raise DataError(f"{field_name}: no audio files ({', '.join(exts)}) in {folder}"
                        + (f"; found only {', '.join(seen)}" if seen else ""))
    if cfg.label_regex is not None:
        pattern = _compile_regex(cfg.label_regex)
        clips = []
        for p in files:
            match = pattern.search(p.name)
            if match is None:
                raise DataError(f"{p}: file name does not match data.label_regex "
                                f"{cfg.label_regex!r}")
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            clips.append(Clip(p, groups.get("label"), groups))
        return clips
    nested = [p for p in files if p.parent != folder]
    if nested and len(nested) != len(files):
        loose = next(p for p in files if p.parent == folder)
        raise DataError(f"{folder}: mixes class sub-folders with loose files (e.g. {loose.name}); "
                        "put every file in a class folder, or set data.label_regex")
    if not nested:  # a flat folder without a regex: unlabelled clips (pretraining only)
        return [Clip(p, None) for p in files]
    return [Clip(p, p.relative_to(folder).parts[0]) for p in files]


def _compile_regex(text: str) -> re.Pattern:
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"data.label_regex: not a valid regular expression ({exc})") from None
    if "label" not in pattern.groupindex:
        raise ConfigError(f"data.label_regex {text!r} has no named group 'label', e.g. "
                          r"'^(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav$'")
    return pattern


def _read_manifest(path: Path, cfg: AudioDataConfig) -> tuple[list[Clip], list[str | None]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8"
            sample = f.read(4096)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:  # one column (paths only), or nothing to go by
                dialect = csv.excel
            rows = list(csv.reader(f, dialect))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    if not rows:
        raise DataError(f"{path}: empty manifest; expected a header path,label[,split]")
    header = [h.strip().lower() for h in rows[0]]
    if "path" not in header:
        raise DataError(f"{path}: manifest header {rows[0]} has no 'path' column "
                        "(expected path,label[,split])")
    col = {name: header.index(name) for name in ("path", "label", "split") if name in header}
    exts = _extensions(cfg)
    clips, splits = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        file = Path(row[col["path"]].strip())
        file = file if file.is_absolute() else path.parent / file
        if file.suffix.lower() not in exts:
            raise DataError(f"{path}, line {line}: {file.name}: unsupported audio extension "
                            f"'{file.suffix}'; supported: {', '.join(exts)}")
        label = row[col["label"]].strip() or None if "label" in col else None
        split = row[col["split"]].strip().lower() if "split" in col else None
        if split is not None and split not in SPLITS:
            raise DataError(f"{path}, line {line}: split '{split}' is not train or test")
        clips.append(Clip(file, label))
        splits.append(split)
    if not clips:
        raise DataError(f"{path}: the manifest lists no files")
    return clips, splits


def split_clips(clips: list[Clip], splits: list[str | None], cfg: AudioDataConfig,
                source: str) -> tuple[list[Clip], list[Clip]]:
    """Train and test clips by manifest column, `test_groups`, or a seeded stratified split."""
    if cfg.test_groups is not None:
        return _split_by_groups(clips, cfg.test_groups, source)
    if any(s is not None for s in splits):
        if any(s is None for s in splits):
            raise DataError(f"{source}: some manifest rows have a split and others do not")
        train = [c for c, s in zip(clips, splits, strict=True) if s == "train"]
        test = [c for c, s in zip(clips, splits, strict=True) if s == "test"]
        if not train or not test:
            raise DataError(f"{source}: the manifest's split column needs both train and test rows")
        return train, test
    if not 0.0 < cfg.test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction must be in (0, 1), got {cfg.test_fraction}")
    from sklearn.model_selection import train_test_split

    labels = [c.label for c in clips]
    counts = {lab: labels.count(lab) for lab in set(labels)}
    n_test = math.ceil(cfg.test_fraction * len(clips))
    fits = min(n_test, len(clips) - n_test) >= len(counts)  # every class on both sides
    stratify = labels if None not in counts and min(counts.values()) >= 2 and fits else None
    if min(n_test, len(clips) - n_test) < 1:
        raise DataError(f"{source}: {len(clips)} clips cannot be split with data.test_fraction="
                        f"{cfg.test_fraction}; add clips or give data.test_path")
    train, test = train_test_split(clips, test_size=cfg.test_fraction,
                                   random_state=cfg.split_seed, stratify=stratify)
    return train, test


def _split_by_groups(clips: list[Clip], test_groups: dict[str, list[str]], source: str):
    for key, values in test_groups.items():
        if not isinstance(values, list):
            raise ConfigError(f"data.test_groups.{key}: expected a list of values, got {values!r}")
        if not any(key in c.groups for c in clips):
            raise ConfigError(f"data.test_groups: '{key}' is not a named group of data.label_regex")
    wanted = {k: {str(v) for v in vals} for k, vals in test_groups.items()}
    is_test = [all(c.groups.get(k) in vals for k, vals in wanted.items()) for c in clips]
    train = [c for c, t in zip(clips, is_test, strict=True) if not t]
    test = [c for c, t in zip(clips, is_test, strict=True) if t]
    if not train or not test:
        raise DataError(f"{source}: data.test_groups {test_groups} leaves "
                        f"{len(train)} training and {len(test)} test clips; both must be non-empty")
    return train, test


# ---------------------------------------------------------------------------------------------
# Decoding


def _check_format(path: Path) -> None:
    if path.suffix.lower() == ".mp3" and "MP3" not in sf.available_formats():
        raise DataError(f"{path}: mp3 is not supported by the installed libsndfile "
                        f"{sf.__libsndfile_version__} (needs >= 1.1); convert it to wav or flac")


def clip_info(path: Path) -> tuple[int, int]:
    """`(frames, sample_rate)` from the file header.

    Raises:
        DataError: missing, unreadable, corrupt or empty file, naming it.
    """
    _check_format(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"{path}: cannot read audio ({exc})") from None
    if info.frames <= 0:
        raise DataError(f"{path}: holds no audio samples (zero-length clip)")
    return int(info.frames), int(info.samplerate)


def read_audio(path: Path, sample_rate: int, start: int = 0,
               seconds: float | None = None) -> np.ndarray:
    """Decode `seconds` of `path` from sample `start` (counted at `sample_rate`), as mono float32
    at `sample_rate`.

    Only the needed frames are read, so a crop of an hour-long file costs a crop.

    Returns:
        `[T]` float32 in [-1, 1].

    Raises:
        DataError: the file cannot be decoded, holds no samples, or holds NaN/inf.
    """
    _check_format(path)
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            first = start * sr // sample_rate  # exact in integers (no float round-off)
            count = -1 if seconds is None else int(math.ceil(seconds * sr)) + 16
            f.seek(min(first, max(f.frames - 1, 0)))
            data = f.read(count, dtype="float32", always_2d=True)  # [T, C]
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"{path}: cannot decode audio ({exc})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: holds no audio samples (empty or truncated file)")
    wave = data.mean(axis=1)
    if not np.isfinite(wave).all():
        raise DataError(f"{path}: holds NaN or infinite samples")
    if sr != sample_rate:
        wave = librosa.resample(wave, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    if seconds is not None:
        wave = wave[: int(round(seconds * sample_rate))]
    return np.ascontiguousarray(wave, dtype=np.float32)


def fit_length(wave: Tensor, length: int, offset: int) -> Tensor:
    """`wave [T]` cut at `offset` to `length` samples, or centre-padded with zeros when shorter."""
    if wave.shape[0] >= length:
        return wave[offset : offset + length]
    missing = length - wave.shape[0]
    return torch.nn.functional.pad(wave, (missing // 2, missing - missing // 2))


# ---------------------------------------------------------------------------------------------
# Dataset


class ClipDataset(Dataset, abc.ABC):
    """Clips as `(wave [L] float32, label index)` at a fixed rate; label -1 when unlabelled.

    `L` is `clip_seconds * sample_rate` for training and centre crops, or the longest clip of the
    set with `crop="full"`. Training crops come from `sample(i, generator)` (the core's seeded
    data path calls it), so they depend on the batch seed only, not on worker scheduling.
    Subclasses say where a clip's samples come from (`wave(i)`).

    Args:
        frames: length of each clip at `sample_rate`.
        labels: `[N]` class indices.
        sample_rate, clip_seconds: output rate and crop length.
        crop: evaluation view, "center" or "full".
    """

    def __init__(self, frames: list[int], labels: Tensor, sample_rate: int, clip_seconds: float,
                 crop: str = "center") -> None:
        if crop not in EVAL_CROPS:
            raise ConfigError(f"data.eval_crop: '{crop}' is not one of {', '.join(EVAL_CROPS)}")
        self.frames, self.labels = frames, labels
        self.sample_rate, self.crop = sample_rate, crop
        self.crop_length = int(round(clip_seconds * sample_rate))
        self.length = max(frames) if crop == "full" else self.crop_length

    def __len__(self) -> int:
        return len(self.frames)

    @abc.abstractmethod
    def wave(self, i: int) -> Tensor:
        """The whole clip `i`, `[T]` float32."""

    def sample(self, i: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A training crop of clip `i` at an offset drawn from `generator`."""
        wave = self.wave(i)
        offset = 0
        if wave.shape[0] > self.crop_length:
            offset = int(torch.randint(0, wave.shape[0] - self.crop_length + 1, (),
                                       generator=generator))
        return fit_length(wave, self.crop_length, offset), self.labels[i]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        """The deterministic view of clip `i`: centre crop (or the whole clip, end-padded)."""
        wave = self.wave(i)
        if self.crop == "full":
            return torch.nn.functional.pad(wave, (0, self.length - wave.shape[0])), self.labels[i]
        return fit_length(wave, self.length, max(wave.shape[0] - self.length, 0) // 2), self.labels[i]


class AudioFiles(ClipDataset):
    """Clips decoded lazily from files (optionally cached in memory, per worker).

    Args:
        clips: the files, header-checked by `check_clips`.
        frames: their lengths at `sample_rate`.
        class_names: label vocabulary (index = class id); other labels map to -1.
        sample_rate, clip_seconds, crop: as `ClipDataset`.
        cache: keep decoded clips in memory. Without it, a file much longer than a crop is
            decoded one crop at a time.
    """

    def __init__(self, clips: list[Clip], frames: list[int], class_names: list[str],
                 sample_rate: int, clip_seconds: float, crop: str = "center",
                 cache: bool = True) -> None:
        index = {name: i for i, name in enumerate(class_names)}
        labels = torch.tensor([index.get(c.label, -1) for c in clips], dtype=torch.long)
        super().__init__(frames, labels, sample_rate, clip_seconds, crop)
        self.clips, self.cache = clips, cache
        self._cache: dict[int, Tensor] = {}

    def wave(self, i: int) -> Tensor:
        wave = self._cache.get(i)
        if wave is None:
            wave = torch.from_numpy(read_audio(self.clips[i].path, self.sample_rate))
            if self.cache:
                self._cache[i] = wave
        return wave

    def sample(self, i: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        length, frames = self.crop_length, self.frames[i]
        if self.cache or frames <= 4 * length:
            return super().sample(i, generator)
        offset = int(torch.randint(0, frames - length + 1, (), generator=generator))
        wave = torch.from_numpy(read_audio(self.clips[i].path, self.sample_rate, start=offset,
                                           seconds=length / self.sample_rate))
        return fit_length(wave, length, 0), self.labels[i]


class AudioArrays(ClipDataset):
    """Clips held in memory (the synthetic set), `waves`: list of `[T_i]` float32."""

    def __init__(self, waves: list[Tensor], labels: Tensor, sample_rate: int,
                 clip_seconds: float, crop: str = "center") -> None:
        super().__init__([w.shape[0] for w in waves], labels, sample_rate, clip_seconds, crop)
        self.waves = waves

    def wave(self, i: int) -> Tensor:
        return self.waves[i]


def check_clips(clips: list[Clip], sample_rate: int, on_error: str,
                source: str) -> tuple[list[Clip], list[int]]:
    """Read every header; return the readable clips and their lengths at `sample_rate`.

    Raises:
        DataError: a corrupt or empty file (with `on_error="raise"`), naming it; with "skip"
            such files are dropped with one warning that counts them.
    """
    kept, frames, bad = [], [], []
    for clip in clips:
        try:
            n, sr = clip_info(clip.path)
        except DataError as exc:
            if on_error != "skip":
                raise DataError(f"{exc} (set data.on_error=skip to leave such files out)") from None
            bad.append(str(exc))
            continue
        kept.append(clip)
        frames.append(max(1, int(math.ceil(n * sample_rate / sr))))
    if bad:
        warnings.warn(f"{source}: skipped {len(bad)} unreadable audio files "
                      f"(data.on_error=skip), e.g. {bad[0]}", stacklevel=3)
    if not kept:
        raise DataError(f"{source}: no readable audio files")
    return kept, frames
