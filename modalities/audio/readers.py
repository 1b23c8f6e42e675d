"""Find audio clips and their labels, decode them, and cut fixed-length crops.

Clips are found and split as `polyjepa.files` says (class folders, file names read with
`data.label_regex`, or a CSV manifest `path,label[,split]`).

Clips are decoded lazily with soundfile (every format the installed libsndfile reads), averaged
to mono and resampled with librosa's soxr backend. Headers are checked when the dataset is built,
so a corrupt or empty file is reported by name before training starts. For training, each sample
is a random crop of `clip_seconds` (short clips are centre-padded with silence), drawn from a
generator the batch seed gives; for evaluation, the centre crop, or the whole clip padded to the
longest of the split.
"""

from __future__ import annotations

import abc
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyjepa.errors import ConfigError, DataError
from polyjepa.extras import require
from polyjepa.files import FileDataConfig, list_files, split_files
from polyjepa.files import LabelledFile as Clip

log = logging.getLogger(__name__)

EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf")
EVAL_CROPS = ("center", "full")


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
class AudioDataConfig(FileDataConfig):
    """The `data:` section of an audio recipe (file layout and splits: `FileDataConfig`)."""

    extensions: list[str] = field(default_factory=lambda: list(EXTENSIONS))
    sample_rate: int = 16000  # every clip is resampled to this rate (Hz)
    clip_seconds: float = 0.95  # length of the crops the encoder sees
    eval_crop: str = "center"  # center | full (whole clips, padded to the longest of the split)
    cache: bool = True  # keep decoded, resampled clips in memory (per worker)
    logmel: LogMelConfig = field(default_factory=LogMelConfig)


def list_clips(spec: str, cfg: AudioDataConfig, root: Path | None,
               field_name: str) -> tuple[list[Clip], list[str | None]]:
    """Clips of a folder or manifest, and the manifest's split column (see `list_files`)."""
    return list_files(spec, cfg, root, field_name, "audio files")


def split_clips(clips: list[Clip], splits: list[str | None], cfg: AudioDataConfig,
                source: str) -> tuple[list[Clip], list[Clip]]:
    """Train and test clips by manifest column, `test_groups`, or a seeded stratified split."""
    return split_files(clips, splits, cfg, source)


# ---------------------------------------------------------------------------------------------
# Decoding


def _soundfile() -> ModuleType:
    return require("soundfile", "audio", "reading audio files")


def _check_format(path: Path) -> None:
    sf = _soundfile()
    if path.suffix.lower() == ".mp3" and "MP3" not in sf.available_formats():
        raise DataError(f"{path}: mp3 is not supported by the installed libsndfile "
                        f"{sf.__libsndfile_version__} (needs >= 1.1); convert it to wav or flac")


def clip_info(path: Path) -> tuple[int, int]:
    """`(frames, sample_rate)` from the file header.

    Raises:
        DataError: missing, unreadable, corrupt or empty file, naming it.
    """
    _check_format(path)
    sf = _soundfile()
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
    sf = _soundfile()
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
        librosa = require("librosa", "audio", "resampling audio")
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
        self.targets: dict[str, np.ndarray] = {}  # extra class targets (`data.probe_groups`)
        self.sample_rate, self.crop = sample_rate, crop
        self.crop_length = int(round(clip_seconds * sample_rate))
        self.length = max(frames) if crop == "full" else self.crop_length

    def __len__(self) -> int:
        return len(self.frames)

    def probe_targets(self) -> dict[str, np.ndarray]:
        """Extra targets for probes, e.g. `{"speaker": [N]}` from `data.probe_groups`."""
        return self.targets

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
        index: dict[str | None, int] = {name: i for i, name in enumerate(class_names)}
        labels = torch.tensor([index.get(c.label, -1) for c in clips], dtype=torch.long)
        super().__init__(frames, labels, sample_rate, clip_seconds, crop)
        self.clips, self.cache = clips, cache
        self._cache: dict[int, Tensor] = {}

    def sample_ids(self) -> list[str]:
        return [str(c.path) for c in self.clips]

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
        log.warning("%s: skipped %d unreadable audio files (data.on_error=skip), e.g. %s",
                    source, len(bad), bad[0])
    if not kept:
        raise DataError(f"{source}: no readable audio files")
    return kept, frames
