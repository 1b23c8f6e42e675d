"""Read video clips from files, frame folders and arrays, decoding only the frames a clip needs.

Sources (one video per file or folder):

* video files through PyAV: whatever the installed FFmpeg decodes (mp4, avi, webm, mkv, mov,
  gif, ...). A clip seeks to the key frame before its first frame and decodes forward to its
  last; frames are scaled by FFmpeg while decoding (`data.size`), so a 4K file never holds more
  than one full-size frame in memory;
* a folder of frames (png/jpg/bmp, in file-name order), found like a file: in a class folder, or
  named in a manifest;
* `.npy` arrays `[T, H, W]` or `[T, H, W, C]`, and `.npz` files holding one such array.

Clips are `[num_frames, C, H, W]` float32 in [0, 1]: frames `start, start + stride, ...`, with a
random start for training (from the batch's generator) and the centred one for evaluation, or
`data.sampling=uniform`: `num_frames` frames spread evenly over the whole video. A video shorter
than a clip is looped, padded with its last frame, or skipped (`data.short_policy`; the count is
reported once).
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyjepa.errors import ConfigError, DataError
from polyjepa.extras import require
from polyjepa.files import FileDataConfig, LabelledFile
from polyjepa.modalities.video.mnist import MovingMNISTConfig

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".gif", ".mpg", ".mpeg")
ARRAY_EXTENSIONS = (".npy", ".npz")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
SAMPLINGS = ("random", "uniform")
SHORT_POLICIES = ("loop", "pad", "skip")


@dataclass
class VideoDataConfig(FileDataConfig):
    """The `data:` section of a video recipe (layout and splits: `FileDataConfig`)."""

    dataset_keys = {**FileDataConfig.dataset_keys, "moving_mnist": None}

    extensions: list[str] = field(default_factory=lambda: [*VIDEO_EXTENSIONS, *ARRAY_EXTENSIONS])
    num_frames: int = 16  # frames per clip
    frame_stride: int = 1  # every k-th frame
    sampling: str = "random"  # random (training: random start; eval: centred) | uniform
    size: list[int] | None = None  # [H, W] every frame is scaled to; None keeps the source size
    grayscale: bool = False
    short_policy: str = "loop"  # a video shorter than a clip: loop | pad | skip
    # Generate Moving MNIST from the MNIST digits in `path` instead of reading videos.
    moving_mnist: MovingMNISTConfig | None = None


@dataclass
class VideoSource:
    """One video: where its frames come from, its frame count and frame size `(H, W)`."""

    path: Path
    label: str | None
    num_frames: int
    frame_size: tuple[int, int]
    groups: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Probing and decoding one source


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)


def is_frame_folder(path: Path) -> bool:
    """A folder holding frame images and no sub-folders is one video."""
    children = list(path.iterdir())
    return (any(p.suffix.lower() in FRAME_EXTENSIONS for p in children)
            and not any(p.is_dir() for p in children))


def _load_array(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False, mmap_mode="r" if path.suffix == ".npy" else None)
        if isinstance(data, np.lib.npyio.NpzFile):
            arrays = [data[k] for k in data.files]
            if len(arrays) != 1:
                raise DataError(f"{path}: a .npz video must hold one array, it holds "
                                f"{len(arrays)} ({', '.join(data.files)})")
            data = arrays[0]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read the array ({exc or 'empty file'})") from None
    if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[-1] not in (1, 3, 4)):
        raise DataError(f"{path}: expected frames [T, H, W] or [T, H, W, C], got {list(data.shape)}")
    return data


def probe(path: Path) -> tuple[int, tuple[int, int]]:
    """`(frame count, (H, W))` of a video file, frame folder or array, without decoding frames.

    Raises:
        DataError: not a video, no frames, or frames of different sizes; the message names it.
    """
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise DataError(f"{path}: a frame folder without frames ({', '.join(FRAME_EXTENSIONS)})")
        Image = require("PIL.Image", "video", "reading folders of frames")

        sizes: dict[tuple[int, int], Path] = {}
        for f in files:
            try:
                with Image.open(f) as image:
                    sizes.setdefault(image.size[::-1], f)
            except OSError as exc:
                raise DataError(f"{f}: cannot read the frame ({exc})") from None
            if len(sizes) > 1:
                (a, fa), (b, fb) = list(sizes.items())[:2]
                raise DataError(f"{path}: frames of different sizes ({fa.name} is {a[0]}x{a[1]}, "
                                f"{fb.name} is {b[0]}x{b[1]})")
        return len(files), next(iter(sizes))
    if path.suffix.lower() in ARRAY_EXTENSIONS:
        data = _load_array(path)
        if data.shape[0] == 0:
            raise DataError(f"{path}: holds no frames")
        return data.shape[0], tuple(data.shape[1:3])
    av = require("av", "video", "reading video files")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: has no video stream (no frames)")
            stream = container.streams.video[0]
            count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            size = (stream.codec_context.height, stream.codec_context.width)
    except av.FFmpegError as exc:
        raise DataError(f"{path}: not a video FFmpeg can read ({exc})") from None
    if count == 0:
        raise DataError(f"{path}: holds no frames (zero-frame video)")
    return count, size


def _decode(path: Path, indices: list[int], size: tuple[int, int] | None,
            gray: bool) -> dict[int, np.ndarray]:
    """Frames `indices` of a video file, decoding from the key frame before the first one."""
    av = require("av", "video", "decoding video files")
    fmt = "gray" if gray else "rgb24"
    height, width = size if size is not None else (None, None)
    wanted, out = set(indices), {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            start = stream.start_time or 0
            first, last = min(wanted), max(wanted)
            if first > 0:
                container.seek(start + int(first / rate / stream.time_base), stream=stream,
                               backward=True)
            counted: int | None = None  # frames without timestamps are counted from the start instead
            for frame in container.decode(stream):
                if frame.pts is None:
                    counted = 0 if counted is None else counted + 1
                    index = counted
                else:
                    index = round(float((frame.pts - start) * stream.time_base) * rate)
                if index in wanted:
                    out[index] = frame.to_ndarray(format=fmt, width=width, height=height)
                if index >= last:
                    break
    except av.FFmpegError as exc:
        raise DataError(f"{path}: cannot decode ({exc})") from None
    return out


def read_frames(source: VideoSource, indices: list[int], size: tuple[int, int] | None,
                gray: bool) -> np.ndarray:
    """Frames `indices` of `source` as uint8 `[T, H, W, C]` (C = 1 or 3), scaled to `size`."""
    path = source.path
    if path.is_dir() or path.suffix.lower() in ARRAY_EXTENSIONS:
        if path.is_dir():
            Image = require("PIL.Image", "video", "reading folders of frames")

            files = _frame_files(path)
            frames = [np.asarray(Image.open(files[i]).convert("L" if gray else "RGB")) for i in indices]
        else:
            data = _load_array(path)
            frames = [np.asarray(data[i]) for i in indices]
        return _to_uint8([_fit(f, size, gray) for f in frames], path)
    decoded = _decode(path, indices, size, gray)
    missing = [i for i in indices if i not in decoded]
    if missing:  # a frame count from the header can overstate what decodes: repeat the last
        if not decoded:
            raise DataError(f"{path}: no frame of {indices[:3]}... decodes")
        last = decoded[max(decoded)]
        decoded.update({i: decoded.get(i, last) for i in missing})
    return _to_uint8([_fit(decoded[i], size, gray) for i in indices], path)


def _fit(frame: np.ndarray, size: tuple[int, int] | None, gray: bool) -> np.ndarray:
    """One frame as `[H, W, C]` with the channels and size asked for."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 4:
        frame = frame[..., :3]
    if gray and frame.shape[-1] == 3:
        frame = (frame @ np.array([0.299, 0.587, 0.114])).astype(frame.dtype)[..., None]
    elif not gray and frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    if size is not None and frame.shape[:2] != tuple(size):
        t = torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1)[None]  # a writable copy
        t = torch.nn.functional.interpolate(t, size=tuple(size), mode="bilinear", antialias=True,
                                            align_corners=False)
        frame = t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return frame


def _to_uint8(frames: list[np.ndarray], path: Path) -> np.ndarray:
    out = np.stack(frames)
    if out.dtype != np.uint8:  # float arrays in [0, 1] (or [0, 255])
        if not np.isfinite(out).all():
            raise DataError(f"{path}: frames hold NaN or infinite values")
        scale = 255.0 if out.max(initial=0) <= 1.0 else 1.0
        out = np.clip(out * scale, 0, 255).round().astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------
# Clip indices and the dataset


def clip_indices(length: int, num_frames: int, stride: int, start: int, policy: str) -> list[int]:
    """`num_frames` frame indices from `start` every `stride`, fitted to a video of `length`
    frames by `policy` (loop back to the start, or pad with the last frame)."""
    raw = [start + k * stride for k in range(num_frames)]
    if policy == "loop":
        return [i % length for i in raw]
    return [min(i, length - 1) for i in raw]


class VideoClips(Dataset):
    """Videos as `(clip [T, C, H, W] float32 in [0, 1], label index)`; label -1 when unlabelled.

    `sample(i, generator)` is the training view (random start); `[i]` the evaluation view
    (centred start, or the `uniform` frames).
    """

    def __init__(self, sources: list[VideoSource], class_names: list[str],
                 cfg: VideoDataConfig) -> None:
        if cfg.sampling not in SAMPLINGS:
            raise ConfigError(f"data.sampling: '{cfg.sampling}' is not one of {', '.join(SAMPLINGS)}")
        if cfg.short_policy not in SHORT_POLICIES:
            raise ConfigError(f"data.short_policy: '{cfg.short_policy}' is not one of "
                              f"{', '.join(SHORT_POLICIES)}")
        if cfg.num_frames < 1 or cfg.frame_stride < 1:
            raise ConfigError(f"data.num_frames and data.frame_stride must be >= 1, got "
                              f"{cfg.num_frames}, {cfg.frame_stride}")
        sizes = {s.frame_size for s in sources}
        if cfg.size is None and len(sizes) > 1:
            raise DataError(f"videos of different frame sizes ({', '.join(map(str, sorted(sizes)[:3]))}"
                            "...); set data.size: [H, W]")
        self.cfg, self.sources = cfg, sources
        index: dict[str | None, int] = {name: i for i, name in enumerate(class_names)}
        self.labels = torch.tensor([index.get(s.label, -1) for s in sources], dtype=torch.long)
        self.size: tuple[int, int] | None = None
        if cfg.size is not None:
            height, width = cfg.size
            self.size = (height, width)

    @property
    def span(self) -> int:
        """Frames a clip covers in the source."""
        return (self.cfg.num_frames - 1) * self.cfg.frame_stride + 1

    def __len__(self) -> int:
        return len(self.sources)

    def sample_ids(self) -> list[str]:
        return [str(s.path) for s in self.sources]

    def _clip(self, i: int, start: int | None) -> Tensor:
        source, cfg = self.sources[i], self.cfg
        if start is None:  # uniform: spread over the whole video
            indices = np.linspace(0, source.num_frames - 1, cfg.num_frames).round().astype(int).tolist()
        else:
            indices = clip_indices(source.num_frames, cfg.num_frames, cfg.frame_stride, start,
                                   cfg.short_policy)
        frames = read_frames(source, indices, self.size, cfg.grayscale)  # [T, H, W, C]
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)

    def sample(self, i: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        room = self.sources[i].num_frames - self.span
        start = None
        if self.cfg.sampling == "random":
            start = int(torch.randint(0, room + 1, (), generator=generator)) if room > 0 else 0
        return self._clip(i, start), self.labels[i]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        room = self.sources[i].num_frames - self.span
        start = None if self.cfg.sampling == "uniform" else max(room, 0) // 2
        return self._clip(i, start), self.labels[i]


def probe_sources(files: list[LabelledFile], cfg: VideoDataConfig, source: str) -> list[VideoSource]:
    """Every video probed (frame count, size) before training; bad ones raise or are skipped
    (`on_error`), and videos shorter than a clip follow `short_policy` (skipped ones counted)."""
    span = (cfg.num_frames - 1) * cfg.frame_stride + 1
    kept, bad, short = [], [], 0
    for f in files:
        try:
            count, size = probe(f.path)
        except DataError as exc:
            if cfg.on_error != "skip":
                raise DataError(f"{exc} (set data.on_error=skip to leave such videos out)") from None
            bad.append(str(exc))
            continue
        if count < span:
            short += 1
            if cfg.short_policy == "skip":
                continue
        kept.append(VideoSource(f.path, f.label, count, size, f.groups))
    if bad:
        log.warning("%s: skipped %d unreadable videos (data.on_error=skip), e.g. %s", source,
                    len(bad), bad[0])
    if short:
        verb = {"skip": "skipped", "loop": "looped", "pad": "padded"}[cfg.short_policy]
        log.warning("%s: %d videos are shorter than a clip (%d frames) and are %s "
                    "(data.short_policy)", source, short, span, verb)
    if not kept:
        raise DataError(f"{source}: no usable videos")
    return kept
