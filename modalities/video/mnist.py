"""Moving MNIST, generated on the fly from MNIST digits (the IDX files, read directly).

`num_digits` digits (28 x 28) bounce inside a square canvas: each starts at a uniform position
with a uniform direction and a speed drawn from `speed` (pixels per frame), moves in a straight
line and reflects off the walls; frames are the pixel-wise maximum of the digits. Clip `i` of a
generator depends only on `(seed, i)`, so any clip can be produced alone (streamable, identical
with any number of workers) and the same seed always gives the same data.

Each clip carries its ground truth for probing: digit classes, initial positions, velocities
(per frame, x right and y down), speeds and directions.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyjepa.errors import DataError

DIGIT = 28
IDX_TYPES: dict[int, npt.DTypeLike] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
                                       0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX array (MNIST's format), gzipped or not.

    Raises:
        DataError: the file is missing, truncated, or not IDX; the message names it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(IDX_TYPES[data[2]])
    body = data[4 + 4 * dims:]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(body) != expected:
        raise DataError(f"{path}: IDX header says {shape} ({expected} bytes), the file holds "
                        f"{len(body)} (truncated?)")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


@dataclass
class ClipTruth:
    """Ground truth of one clip: per digit `[D]` classes, `[D, 2]` initial top-left positions
    (x, y) and velocities (pixels per frame), `[D]` speeds and directions (radians); with turns,
    `[D]` the frame each digit turns at and which of the generator's turn angles it takes."""

    classes: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    turn_steps: np.ndarray | None = None
    turns: np.ndarray | None = None

    @property
    def speeds(self) -> np.ndarray:
        return np.linalg.norm(self.velocities, axis=1)

    @property
    def directions(self) -> np.ndarray:
        return np.arctan2(self.velocities[:, 1], self.velocities[:, 0])


class MovingMNIST:
    """A seeded, streamable Moving MNIST generator.

    Args:
        images: `[N, 28, 28]` uint8 digits; labels: `[N]` their classes.
        num_frames: frames per clip `T`.
        num_digits: digits per clip `D`.
        canvas: frame side in pixels (64).
        speed: (low, high) speed range in pixels per frame.
        seed: clip `i` depends on `(seed, i)` only.
        turn_at: (first, last) frame range in which each digit turns once, at a uniform frame,
            or None (straight lines): a future the first frames do not determine.
        turn_angles: the angles (degrees) a turn draws from uniformly; the turn rotates the
            digit's unfolded motion, so after an odd number of bounces it shows mirrored.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_frames: int = 20,
                 num_digits: int = 2, canvas: int = 64, speed: tuple[float, float] = (2.0, 5.0),
                 seed: int = 0, turn_at: tuple[int, int] | None = None,
                 turn_angles: tuple[float, ...] = (-90.0, -45.0, 0.0, 45.0, 90.0)) -> None:
        if images.ndim != 3 or images.shape[1:] != (DIGIT, DIGIT) or len(images) != len(labels):
            raise DataError(f"Moving MNIST needs [N, 28, 28] digits and N labels, got "
                            f"{list(images.shape)} and {len(labels)}")
        if canvas < DIGIT:
            raise ValueError(f"canvas={canvas} is smaller than a {DIGIT}-pixel digit")
        low, high = speed
        if num_frames < 1 or num_digits < 1 or not 0 <= low <= high:
            raise ValueError(f"bad generator settings: num_frames={num_frames}, "
                             f"num_digits={num_digits}, speed={speed}")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.num_frames, self.num_digits, self.canvas = num_frames, num_digits, canvas
        self.speed, self.seed = (low, high), seed
        if turn_at is not None and not (1 <= turn_at[0] <= turn_at[1] < num_frames):
            raise ValueError(f"turn_at must be (first, last) frames with 1 <= first <= last < "
                             f"num_frames={num_frames}, got {turn_at}")
        if not turn_angles:
            raise ValueError("turn_angles: give at least one angle")
        self.turn_at = None if turn_at is None else (int(turn_at[0]), int(turn_at[1]))
        self.turn_angles = np.radians(np.asarray(turn_angles, dtype=np.float64))

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs: Any) -> MovingMNIST:
        """Digits from an MNIST folder holding `*-images-idx3-ubyte[.gz]` and the labels file."""
        folder = Path(folder)
        images = sorted(folder.glob("*images-idx3-ubyte*"))
        labels = sorted(folder.glob("*labels-idx1-ubyte*"))
        if not images or not labels:
            raise DataError(f"{folder}: no MNIST IDX files (*-images-idx3-ubyte[.gz] and "
                            "*-labels-idx1-ubyte[.gz])")
        return cls(read_idx(images[0]), read_idx(labels[0]), **kwargs)

    def _draw(self, i: int) -> tuple[np.ndarray, ClipTruth]:
        """Clip `i`'s digit image indices `[D]` and ground truth."""
        rng = np.random.default_rng([self.seed, i])
        picks = rng.integers(0, len(self.images), self.num_digits)
        room = self.canvas - DIGIT
        positions = rng.uniform(0, room, size=(self.num_digits, 2))
        angle = rng.uniform(0, 2 * np.pi, self.num_digits)
        speed = rng.uniform(*self.speed, self.num_digits)
        velocities = np.stack([np.cos(angle), np.sin(angle)], axis=1) * speed[:, None]
        if self.turn_at is None:
            return picks, ClipTruth(self.labels[picks], positions, velocities)
        steps = rng.integers(self.turn_at[0], self.turn_at[1] + 1, self.num_digits)
        turns = rng.integers(0, len(self.turn_angles), self.num_digits)
        return picks, ClipTruth(self.labels[picks], positions, velocities, steps, turns)

    def digit_indices(self, i: int) -> np.ndarray:
        """Which digit images `[D]` clip `i` shows."""
        return self._draw(i)[0]

    def truth(self, i: int) -> ClipTruth:
        """The digit classes and motions of clip `i`, without drawing it."""
        return self._draw(i)[1]

    def trajectories(self, truth: ClipTruth) -> np.ndarray:
        """Top-left positions `[T, D, 2]` of each digit, bouncing off the walls."""
        room = self.canvas - DIGIT
        t = np.arange(self.num_frames)[:, None, None]
        raw = truth.positions[None] + t * truth.velocities[None]  # unfolded straight lines
        if truth.turn_steps is not None and truth.turns is not None:
            theta = self.turn_angles[truth.turns]  # [D]
            cos, sin = np.cos(theta), np.sin(theta)
            v = truth.velocities
            turned = np.stack([cos * v[:, 0] - sin * v[:, 1], sin * v[:, 0] + cos * v[:, 1]], 1)
            after = np.clip(t - truth.turn_steps[None, :, None], 0, None)  # frames since the turn
            raw = raw + after * (turned - v)[None]  # from the turn on, the turned velocity
        folded = np.mod(raw, 2 * room) if room > 0 else np.zeros_like(raw)
        return np.where(folded > room, 2 * room - folded, folded)  # reflect

    def clip(self, i: int) -> tuple[np.ndarray, ClipTruth]:
        """Clip `i` as `[T, canvas, canvas]` uint8 frames, and its ground truth."""
        picks, truth = self._draw(i)
        frames = np.zeros((self.num_frames, self.canvas, self.canvas), dtype=np.uint8)
        corners = np.rint(self.trajectories(truth)).astype(int)
        for d, pick in enumerate(picks):
            digit = self.images[pick]
            for t in range(self.num_frames):
                x, y = corners[t, d]
                window = frames[t, y:y + DIGIT, x:x + DIGIT]
                np.maximum(window, digit, out=window)
        return frames, truth


@dataclass
class MovingMNISTConfig:
    """`data.moving_mnist`: generate clips from the MNIST digits in `data.path` instead of
    reading videos. Training clips draw digits from the first `1 - test_fraction` of the digit
    images, test clips from the rest (no digit image in both)."""

    train_clips: int = 10000
    test_clips: int = 2000
    num_digits: int = 1
    canvas: int = 64
    speed: list[float] = field(default_factory=lambda: [2.0, 5.0])  # pixels per frame
    seed: int = 0  # training clips use (seed, i), test clips (seed + 1, i)
    # each digit turns once, at a uniform frame in [first, last], by one of turn_angles
    # (degrees): a future its first frames do not determine (VJ-VCR's latent variables)
    turn_at: list[int] | None = None
    turn_angles: list[float] = field(default_factory=lambda: [-90.0, -45.0, 0.0, 45.0, 90.0])


class MovingMNISTClips(Dataset):
    """Generated clips as `(clip [T, 1, H, W] float32 in [0, 1], class of the first digit)`;
    `truth(i)` gives the clip's digits and motions for dynamics probes."""

    def __init__(self, generator: MovingMNIST, num_clips: int) -> None:
        self.generator, self.num_clips = generator, num_clips

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        frames, truth = self.generator.clip(i)
        clip = torch.from_numpy(frames[:, None].astype(np.float32) / np.float32(255.0))
        return clip, torch.tensor(int(truth.classes[0]))

    @property
    def labels(self) -> np.ndarray:
        """`[N]` class of each clip's first digit, without drawing frames."""
        return np.asarray([self.truth(i).classes[0] for i in range(self.num_clips)], dtype=np.int64)

    def truth(self, i: int) -> ClipTruth:
        """Clip `i`'s digit classes and motions, without drawing its frames."""
        return self.generator.truth(i)

    def probe_targets(self) -> dict[str, np.ndarray]:
        """Dynamics of the first digit, for probes: `speed [N]` (pixels per frame, constant in a
        clip), initial `velocity [N, 2]` and initial `direction [N]` in 8 bins of 45 degrees."""
        truths = [self.truth(i) for i in range(self.num_clips)]
        velocity = np.stack([t.velocities[0] for t in truths])
        angle = np.mod(np.arctan2(velocity[:, 1], velocity[:, 0]), 2 * np.pi)
        targets = {"speed": np.linalg.norm(velocity, axis=1), "velocity": velocity,
                   "direction": (angle // (np.pi / 4)).astype(np.int64) % 8}
        turns = [t.turns for t in truths if t.turns is not None]
        if turns and len(turns) == len(truths):  # which turn the first digit takes
            targets["turn"] = np.asarray([t[0] for t in turns], dtype=np.int64)
        return targets
