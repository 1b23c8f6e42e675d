"""Synthetic videos for tests: one bright shape (square, disk or cross, the class) moving in a
straight line across a dark 32 x 32 canvas and bouncing off the walls."""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ["square", "disk", "cross"]


def _shape(kind: int, size: int = 8) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    if kind == 0:
        return np.ones((size, size))
    if kind == 1:
        return (x**2 + y**2 <= (size / 2) ** 2).astype(float)
    return ((np.abs(x) < 1.5) | (np.abs(y) < 1.5)).astype(float)


def synthetic_videos(n: int, num_frames: int = 16, canvas: int = 32,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` clips `[n, T, canvas, canvas]` uint8, their classes `[n]` and velocities `[n, 2]`."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))
    velocity = rng.uniform(-3, 3, size=(n, 2))
    start = rng.uniform(0, canvas - 8, size=(n, 2))
    clips = np.zeros((n, num_frames, canvas, canvas), dtype=np.uint8)
    room = canvas - 8
    for i in range(n):
        sprite = (_shape(labels[i]) * 220).astype(np.uint8)
        for t in range(num_frames):
            pos = np.mod(start[i] + t * velocity[i], 2 * room)
            x, y = np.rint(np.where(pos > room, 2 * room - pos, pos)).astype(int)
            clips[i, t, y:y + 8, x:x + 8] = sprite
    return clips, labels, velocity


def forking_videos(n: int, num_frames: int = 8, fork: int = 3, canvas: int = 32,
                   seed: int = 0, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A stochastic scene: a square falls down the middle for `fork` frames, then turns left or
    right at random (the past does not say which). With `shift > 0` it falls in a column drawn
    uniformly within `shift` pixels of the middle, which the past does show. Returns clips
    `[n, T, canvas, canvas]` uint8 and the branch taken `[n]` (0 left, 1 right)."""
    rng = np.random.default_rng(seed)
    branch = rng.integers(0, 2, n)
    columns = (canvas - 6) // 2 + rng.integers(-shift, shift + 1, n)
    clips = np.zeros((n, num_frames, canvas, canvas), dtype=np.uint8)
    for i in range(n):
        for t in range(num_frames):
            y = min(2 + 3 * min(t, fork), canvas - 6)
            x = columns[i] + (1 if branch[i] else -1) * 4 * max(t - fork, 0)
            x = int(np.clip(x, 0, canvas - 6))
            clips[i, t, y:y + 6, x:x + 6] = 230
    return clips, branch
