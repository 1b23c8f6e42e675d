"""Synthetic sounds with class structure, for tests and demos without files.

Five classes, each a family with random parameters, random gain and a little background noise:
0 harmonic tone, 1 rising chirp, 2 falling chirp, 3 noise bursts, 4 tremolo tone. Telling them
apart needs spectro-temporal shape (direction of a sweep, periodicity of an envelope), not just
energy, so a pretrained encoder has something to learn.
"""

from __future__ import annotations

import numpy as np
import torch

CLASS_NAMES = ["tone", "chirp_up", "chirp_down", "bursts", "tremolo"]


def _chirp(t: np.ndarray, f_start: float, f_end: float) -> np.ndarray:
    """Exponential sweep from `f_start` to `f_end` Hz over `t`."""
    duration = t[-1] if t[-1] > 0 else 1.0
    k = (f_end / f_start) ** (1 / duration)
    return np.sin(2 * np.pi * f_start * (k**t - 1) / np.log(k))


def synthetic_waves(n: int, sample_rate: int = 16000, seconds: float = 1.2,
                    seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """`n` clips `[seconds * sample_rate]` float32 in [-1, 1] and their labels `[n]`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    nyquist = sample_rate / 2
    labels = np.arange(n) % len(CLASS_NAMES)
    rng.shuffle(labels)
    waves = []
    for label in labels:
        if label == 0:
            f0 = rng.uniform(150, 500)
            wave = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
                       for k in range(1, 5) if k * f0 < nyquist)
        elif label in (1, 2):
            low, high = rng.uniform(150, 400), rng.uniform(0.3, 0.45) * sample_rate
            wave = _chirp(t, low, high) if label == 1 else _chirp(t, high, low)
        elif label == 3:
            wave = np.zeros_like(t)
            for _ in range(rng.integers(3, 6)):
                start = rng.uniform(0, seconds - 0.1)
                mask = (t >= start) & (t < start + rng.uniform(0.04, 0.1))
                wave[mask] = rng.normal(size=mask.sum())
        else:
            carrier = rng.uniform(800, 2000)
            rate = rng.uniform(6, 12)
            wave = np.sin(2 * np.pi * carrier * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
        wave = wave / (np.abs(wave).max() + 1e-9) * rng.uniform(0.2, 0.9)
        wave = wave + 0.01 * rng.normal(size=t.shape)
        waves.append(torch.from_numpy(np.clip(wave, -1, 1).astype(np.float32)))
    return waves, torch.from_numpy(labels).long()
