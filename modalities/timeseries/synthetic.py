"""Synthetic series with class structure, for tests and smoke runs (no files needed).

Four classes of two-channel series, each of a random length in `[min_length, length]`:
0 `slow_sine` and 1 `fast_sine` (random phase and amplitude, the second channel a shifted copy),
2 `ar` (an AR(1) process, coefficient 0.9, in both channels), 3 `regime` (noise around a level
that switches once, at a random step, between -1 and +1). Every series has additive noise.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ["slow_sine", "fast_sine", "ar", "regime"]


def _one(kind: int, t: int, rng: np.random.Generator) -> np.ndarray:
    steps = np.arange(t)
    if kind in (0, 1):
        freq = (0.03 if kind == 0 else 0.12) * rng.uniform(0.9, 1.1)
        phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.8, 1.2)
        base = amp * np.stack([np.sin(2 * np.pi * freq * steps + phase),
                               np.sin(2 * np.pi * freq * steps + phase + np.pi / 2)])
    elif kind == 2:
        base = np.zeros((2, t))
        noise = rng.normal(0, 0.5, (2, t))
        for i in range(1, t):
            base[:, i] = 0.9 * base[:, i - 1] + noise[:, i]
    else:
        switch = rng.integers(t // 4, 3 * t // 4)
        level = np.where(steps < switch, -1.0, 1.0) * rng.choice([-1, 1])
        base = np.stack([level, -level])
    return (base + rng.normal(0, 0.1, (2, t))).astype(np.float32)


def synthetic_series(n: int, length: int = 64, min_length: int = 48,
                     seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """`n` series `[2, T_i]` (T_i uniform in `[min_length, length]`) and their classes `[n]`."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASS_NAMES)
    rng.shuffle(labels)
    lengths = rng.integers(min_length, length + 1, n)
    return [_one(int(k), int(t), rng) for k, t in zip(labels, lengths, strict=True)], labels
