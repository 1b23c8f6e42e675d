"""Video modality: PyAV / frame-folder / array readers, a Moving MNIST generator, a per-frame CNN
encoder (VJ-VCR), a tubelet tokenizer (video ViTs) and the pixel baseline's frame decoder."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from polyjepa.files import LabelledFile, list_files, split_files, training_classes
from polyjepa.modalities.video.augment import ClipCrop
from polyjepa.modalities.video.encoders import FrameCNN, FrameDecoder
from polyjepa.modalities.video.mnist import MovingMNIST, MovingMNISTClips, MovingMNISTConfig
from polyjepa.modalities.video.readers import (
    VideoClips,
    VideoDataConfig,
    is_frame_folder,
    probe_sources,
)
from polyjepa.modalities.video.synthetic import CLASS_NAMES, synthetic_videos
from polyjepa.modalities.video.tokenizer import TubeletPatches
from polyjepa.paths import resolve_path
from polyjepa.registry import ModalityPlugin

RAW_SIDE = 8  # the raw-pixel baseline pools every frame to 8 x 8


class VideoArrays(Dataset):
    """Clips held in memory, `[N, T, H, W]` uint8, as `(clip [T, 1, H, W] float32, label)`, with
    their shapes' velocities `[N, 2]` as probe targets."""

    def __init__(self, clips: np.ndarray, labels: np.ndarray, velocities: np.ndarray) -> None:
        self.clips, self.labels = torch.from_numpy(clips), torch.as_tensor(labels, dtype=torch.long)
        self.velocities = velocities

    def probe_targets(self) -> dict:
        return {"velocity": self.velocities}

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.clips[i].unsqueeze(1).float().div(255.0), self.labels[i]


def _meta(dataset: Dataset, class_names: list[str]) -> dict:
    clip = dataset[0][0]
    t, c, h, w = clip.shape
    return {"class_names": list(class_names), "num_classes": len(class_names), "num_frames": t,
            "num_tokens": t,  # one per frame for per-frame encoders (tokenizers say otherwise)
            "channels": c, "frame_size": [h, w]}


def _moving_mnist(cfg: VideoDataConfig, mm: MovingMNISTConfig,
                  root: Path | None) -> tuple[MovingMNISTClips, MovingMNISTClips, dict]:
    folder = resolve_path(cfg.path, root, "data.path")
    full = MovingMNIST.from_folder(folder)
    cut = int(round(len(full.images) * (1 - cfg.test_fraction)))
    low, high = mm.speed
    turn_at = None if mm.turn_at is None else (mm.turn_at[0], mm.turn_at[1])
    generator = partial(MovingMNIST, num_frames=cfg.num_frames, num_digits=mm.num_digits,
                        canvas=mm.canvas, speed=(low, high), turn_at=turn_at,
                        turn_angles=tuple(mm.turn_angles))
    train = MovingMNISTClips(generator(full.images[:cut], full.labels[:cut], seed=mm.seed),
                             mm.train_clips)
    test = MovingMNISTClips(generator(full.images[cut:], full.labels[cut:], seed=mm.seed + 1),
                            mm.test_clips)
    return train, test, _meta(train, [str(d) for d in range(10)])


def _videos(spec: str, cfg: VideoDataConfig, root: Path | None,
            field_name: str) -> tuple[list[LabelledFile], list[str | None]]:
    """`(files, manifest splits)` of a folder or manifest of videos and frame folders."""
    return list_files(spec, cfg, root, field_name, "videos", is_frame_folder)


def load_data(cfg: VideoDataConfig, root: Path | None,
              ) -> tuple[VideoClips | MovingMNISTClips, VideoClips | MovingMNISTClips, dict]:
    """`(train, test, meta)`: videos found, probed and split, or Moving MNIST generated."""
    if cfg.moving_mnist is not None:
        return _moving_mnist(cfg, cfg.moving_mnist, root)
    files, splits = _videos(cfg.path, cfg, root, "data.path")
    if cfg.test_path is not None:
        train_files, (test_files, _) = files, _videos(cfg.test_path, cfg, root, "data.test_path")
    else:
        train_files, test_files = split_files(files, splits, cfg, cfg.path)
    class_names = training_classes(train_files, test_files)
    train = VideoClips(probe_sources(train_files, cfg, "training videos"), class_names, cfg)
    test = VideoClips(probe_sources(test_files, cfg, "test videos"), class_names, cfg)
    return train, test, _meta(train, class_names)


def load_file(cfg: VideoDataConfig, path: str, root: Path | None, meta: dict) -> VideoClips:
    """Videos of a folder or manifest, labelled with the run's classes (new ones appended)."""
    files, _ = _videos(path, cfg, root, "data")
    names = list(meta["class_names"])
    names += sorted({f.label for f in files if f.label is not None} - set(names))
    return VideoClips(probe_sources(files, cfg, str(path)), names, cfg)


def synthetic(n: int = 300, seed: int = 0) -> tuple[VideoArrays, VideoArrays, dict]:
    """Built-in moving shapes (see `synthetic.py`), 16 frames of 32 x 32, split 80/20."""
    clips, labels, velocities = synthetic_videos(n, seed=seed)
    cut = int(0.8 * n)
    train = VideoArrays(clips[:cut], labels[:cut], velocities[:cut])
    return (train, VideoArrays(clips[cut:], labels[cut:], velocities[cut:]),
            _meta(train, CLASS_NAMES))


@torch.no_grad()
def raw_features(dataset: Dataset) -> torch.Tensor:
    """The raw-pixel baseline: every frame average-pooled to 8 x 8, flattened `[N, T * C * 64]`."""
    rows = [torch.nn.functional.adaptive_avg_pool2d(dataset[i][0], RAW_SIDE).flatten()
            for i in range(len(dataset))]
    return torch.stack(rows)


plugin = ModalityPlugin(
    name="video",
    data_config=VideoDataConfig,
    load_data=load_data,
    synthetic=synthetic,
    raw_features=raw_features,
    load_file=load_file,
    components={"frame_cnn": FrameCNN, "frame_decoder": FrameDecoder, "tubelets": TubeletPatches,
                "crop": ClipCrop},
)
