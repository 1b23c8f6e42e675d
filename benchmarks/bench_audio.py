"""Audio throughput, in one run (ratios are what to read; these machines are shared and noisy):

(a) BYOL-A's augmentation chain (Mixup -> Random Resize Crop -> Linear Fader -> post-norm) batched
    on the device, one call per batch, vs the same chain applied one example at a time as the
    official data loader does (a faithful per-example re-implementation of the authors' modules);
(b) our torch log-mel frontend on a batch vs `librosa.feature.melspectrogram` clip by clip;
(c) BYOL-A training steps per second (byol_a_demo's model on the synthetic audio set).

Rounds alternate A and B (ABBA) and the median of per-round ratios is reported. Prints:

    augment_batched_samples_per_s=...  augment_per_example_samples_per_s=...  augment_speedup=...
    logmel_torch_samples_per_s=...     logmel_librosa_samples_per_s=...       logmel_speedup=...
    byol_a_train_samples_per_s=...

Usage: python benchmarks/bench_audio.py [--rounds 10] [--batch 256]
"""

from __future__ import annotations

import argparse
import random

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from timing import abba, train_samples_per_s

from polyjepa.modalities.audio.augment import (
    BatchNormalize,
    MixupMemory,
    RandomLinearFader,
    RandomResizeCrop,
)
from polyjepa.modalities.audio.frontend import LogMel

SR, N_MELS, FRAMES = 16000, 64, 96


class PerExampleChain:
    """The official BYOL-A v2 augmentation, one example at a time (nttcslab/byol-a's
    MixupBYOLA, RandomResizeCrop, RandomLinearFader, then NormalizeBatch on the batch)."""

    def __init__(self, ratio: float = 0.4, memory_size: int = 2048) -> None:
        self.ratio, self.memory_size, self.memory = ratio, memory_size, []

    def mixup(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.ratio * np.random.random()
        if self.memory:
            z = self.memory[np.random.randint(len(self.memory))]
            mixed = torch.log((1 - lam) * x.exp() + lam * z.exp() + torch.finfo(x.dtype).eps)
        else:
            mixed = x
        self.memory = (self.memory + [x])[-self.memory_size:]
        return mixed

    @staticmethod
    def resize_crop(x: torch.Tensor) -> torch.Tensor:
        c, f, t = x.shape
        canvas = torch.zeros(c, f, int(t * 1.5))
        x0 = (canvas.shape[-1] - t) // 2
        canvas[:, :, x0:x0 + t] = x
        h = int(np.clip(int(np.random.uniform(0.6, 1.5) * f), 1, f))
        w = int(np.clip(int(np.random.uniform(0.6, 1.5) * t), 1, canvas.shape[-1]))
        i = random.randint(0, f - h)
        j = random.randint(0, canvas.shape[-1] - w)
        crop = canvas[:, i:i + h, j:j + w]
        return F.interpolate(crop.unsqueeze(0), size=(f, t), mode="bicubic",
                             align_corners=True).squeeze(0)

    @staticmethod
    def fader(x: torch.Tensor) -> torch.Tensor:
        head, tail = 2 * np.random.rand(2) - 1
        return x + torch.linspace(head, tail, x.shape[-1]).reshape(1, 1, -1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        views = [self.fader(self.resize_crop(self.mixup(x))) for x in batch]
        out = torch.stack(views)
        return (out - out.mean()) / out.std().clamp_min(torch.finfo(out.dtype).eps)


def batched_chain(memory_size: int = 2048):
    modules = [MixupMemory(N_MELS, FRAMES, 0.4, memory_size), RandomResizeCrop(),
               RandomLinearFader(), BatchNormalize()]

    def run(batch: torch.Tensor, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        for m in modules:
            batch = m(batch, g)
        return batch

    return run


def bench_augment(batch: int, rounds: int) -> None:
    x = torch.randn(batch, 1, N_MELS, FRAMES)
    batched, per_example = batched_chain(), PerExampleChain()
    batched(x, 0), per_example(x)  # fill both memories once
    seeds = iter(range(1, 10**6))
    t_b, t_p, ratio = abba(lambda: batched(x, next(seeds)), lambda: per_example(x), rounds)
    print(f"augment_batched_samples_per_s={batch / t_b:.1f}")
    print(f"augment_per_example_samples_per_s={batch / t_p:.1f}")
    print(f"augment_speedup={ratio:.2f}")


def bench_logmel(batch: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    waves = rng.uniform(-0.5, 0.5, size=(batch, int(0.95 * SR))).astype(np.float32)
    frontend = LogMel(SR, N_MELS, 1024, None, 160, 60.0, 7800.0, "slaney", "slaney")
    tensor = torch.from_numpy(waves)

    def ours() -> None:
        with torch.no_grad():
            frontend(tensor)

    def reference() -> None:
        for w in waves:
            mel = librosa.feature.melspectrogram(y=w, sr=SR, n_fft=1024, hop_length=160,
                                                 n_mels=N_MELS, fmin=60, fmax=7800,
                                                 pad_mode="reflect")
            np.log(mel + np.finfo(np.float32).eps)

    t_o, t_r, ratio = abba(ours, reference, rounds)
    print(f"logmel_torch_samples_per_s={batch / t_o:.1f}")
    print(f"logmel_librosa_samples_per_s={batch / t_r:.1f}")
    print(f"logmel_speedup={ratio:.2f}")


def bench_training(steps: int) -> None:
    rate = train_samples_per_s("byol_a_demo", ["synthetic=true", "train.batch_size=32"], steps)
    print(f"byol_a_train_samples_per_s={rate:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    bench_augment(args.batch, args.rounds)
    bench_logmel(args.batch, args.rounds)
    bench_training(args.train_steps)


if __name__ == "__main__":
    main()
