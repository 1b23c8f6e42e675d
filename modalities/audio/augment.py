"""BYOL-A's augmentations on log-mel batches `[B, 1, F, T]`, run on the training device.

Each module is called once per batch (BYOL stacks both views, `[2B, ...]`) and draws one set of
parameters per example from the batch's CPU generator, so a batch's views depend only on its seed,
whatever the device. The official code (Niizumi et al., nttcslab/byol-a) applies the same chain to
one example at a time; `benchmarks/bench_audio.py` measures the difference.

Order (`recipes/byol_a.yaml`): Mixup -> RandomResizeCrop -> RandomLinearFader (v2) -> batch
post-normalisation. Pre-normalisation with dataset statistics is the log-mel frontend's job.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = float(torch.finfo(torch.float32).eps)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def log_mixup_exp(x: Tensor, z: Tensor, lam: Tensor) -> Tensor:
    """Mix log-mel spectrograms in the linear (power) domain: `log((1 - λ) e^x + λ e^z + eps)`.

    Args:
        x, z: `[B, ...]` log-mel batches.
        lam: `[B]` mixing weights of `z`.
    """
    lam = lam.view(-1, *([1] * (x.dim() - 1)))
    return torch.log((1 - lam) * x.exp() + lam * z.exp() + EPS)


class MixupMemory(nn.Module):
    """Mixup with a FIFO memory of past inputs (BYOL-A), mixed in the linear domain.

    Each example is mixed with a random memory entry, with weight λ ~ U[0, ratio); then the
    batch's unmixed inputs are pushed into the memory (oldest out). An empty memory mixes
    nothing. The memory is a buffer: it is checkpointed with the objective, so a resumed run
    mixes exactly as an uninterrupted one. Under DDP each process keeps its own memory.

    Args:
        n_mels, num_frames: `F, T` of the log-mel inputs (from the dataset's meta).
        ratio: upper bound of λ (0.4 in BYOL-A v1, 0.2 in v2).
        memory_size: entries kept (2048).
    """

    kind = "augmentation"
    on_device = True
    rank_local = True  # DDP leaves its buffers alone (each rank's memory is its own)

    def __init__(self, n_mels: int, num_frames: int, ratio: float = 0.4,
                 memory_size: int = 2048) -> None:
        super().__init__()
        if not 0 <= ratio <= 1:
            raise ValueError(f"mixup ratio must lie in [0, 1], got {ratio}")
        if memory_size < 1:
            raise ValueError(f"mixup memory_size must be >= 1, got {memory_size}")
        self.ratio = ratio
        self.register_buffer("memory", torch.zeros(memory_size, 1, n_mels, num_frames))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("head", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, size = x.shape[0], self.memory.shape[0]
        if x.shape[1:] != self.memory.shape[1:]:
            shape = ", ".join(map(str, self.memory.shape[1:]))
            raise ValueError(f"mixup expects log-mel batches [B, {shape}], got {list(x.shape)}")
        lam = (self.ratio * torch.rand(b, generator=generator)).to(x.device)
        filled = int(self.filled)
        choice = torch.randint(0, max(filled, 1), (b,), generator=generator).to(x.device)
        out = log_mixup_exp(x, self.memory[choice], lam) if filled else x
        kept = x[-size:].detach()  # push (the newest `size` of) this batch, oldest entries out
        slots = (int(self.head) + torch.arange(kept.shape[0], device=x.device)) % size
        self.memory[slots] = kept.to(self.memory.dtype)
        self.head.fill_((int(self.head) + kept.shape[0]) % size)
        self.filled.fill_(min(filled + kept.shape[0], size))
        return out


class RandomResizeCrop(nn.Module):
    """BYOL-A's random resize crop on a virtual canvas, batched with `grid_sample`.

    Each log-mel `[F, T]` sits in the middle of a zero canvas `[F * vf, T * vt]` (`vf, vt` =
    `virtual_crop_scale`); a crop of `h = F * U(freq_scale)`, `w = T * U(time_scale)` (clipped to
    the canvas) at a uniform position is resized back to `[F, T]` bicubically (align-corners
    geometry, as the official `F.interpolate` call). Unlike cropping then resizing, bicubic
    weights at the crop's border read the canvas just outside it.

    Args:
        virtual_crop_scale: canvas size over the input, (frequency, time).
        freq_scale, time_scale: ranges of the crop size over the input size.
    """

    kind = "augmentation"
    on_device = True

    def __init__(self, virtual_crop_scale: tuple[float, float] = (1.0, 1.5),
                 freq_scale: tuple[float, float] = (0.6, 1.5),
                 time_scale: tuple[float, float] = (0.6, 1.5)) -> None:
        super().__init__()
        for name, (low, high) in (("freq_scale", freq_scale), ("time_scale", time_scale)):
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        if len(virtual_crop_scale) != 2 or min(virtual_crop_scale) < 1:
            raise ValueError("virtual_crop_scale must be two canvas factors (frequency, time), each "
                             f">= 1, got {virtual_crop_scale}")
        self.virtual_crop_scale = tuple(virtual_crop_scale)
        self.freq_scale, self.time_scale = tuple(freq_scale), tuple(time_scale)

    def crop_boxes(self, b: int, f: int, t: int, generator: torch.Generator) -> Tensor:
        """`[B, 4]` crops `(top, left, height, width)` in canvas pixels."""
        canvas_h, canvas_w = int(f * self.virtual_crop_scale[0]), int(t * self.virtual_crop_scale[1])
        h = (_uniform(b, *self.freq_scale, generator) * f).long().clamp(1, canvas_h)
        w = (_uniform(b, *self.time_scale, generator) * t).long().clamp(1, canvas_w)
        top = (torch.rand(b, generator=generator, dtype=torch.float64) * (canvas_h - h + 1)).long()
        left = (torch.rand(b, generator=generator, dtype=torch.float64) * (canvas_w - w + 1)).long()
        return torch.stack([top, left, h, w], dim=1)

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, _, f, t = x.shape
        top, left, h, w = self.crop_boxes(b, f, t, generator).to(x.device, torch.float32).unbind(1)
        x0 = (int(t * self.virtual_crop_scale[1]) - t) // 2  # the input's offset in the canvas
        y0 = (int(f * self.virtual_crop_scale[0]) - f) // 2
        rows = torch.linspace(0, 1, f, device=x.device)  # output pixel -> fraction of the crop
        cols = torch.linspace(0, 1, t, device=x.device)
        y = top[:, None] + rows[None] * (h[:, None] - 1) - y0  # [B, F] input pixel coordinates
        xs = left[:, None] + cols[None] * (w[:, None] - 1) - x0  # [B, T]
        gy = 2 * y / max(f - 1, 1) - 1
        gx = 2 * xs / max(t - 1, 1) - 1
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
        return F.grid_sample(x, grid.to(x.dtype), mode="bicubic", padding_mode="zeros",
                             align_corners=True)


class RandomLinearFader(nn.Module):
    """BYOL-A v2: add a linear ramp over time, from `head` to `tail`, each ~ U(-gain, gain)."""

    kind = "augmentation"
    on_device = True

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, t = x.shape[0], x.shape[-1]
        ends = (self.gain * (2 * torch.rand(b, 2, generator=generator) - 1)).to(x.device, x.dtype)
        ramp = torch.linspace(0, 1, t, device=x.device, dtype=x.dtype)
        slope = ends[:, :1] + (ends[:, 1:] - ends[:, :1]) * ramp  # [B, T]
        return x + slope[:, None, None, :]


class BatchNormalize(nn.Module):
    """BYOL-A post-normalisation: standardise the batch (both views together) with its own mean
    and (unbiased) std over every axis but the channel; std clamped at eps."""

    kind = "augmentation"
    on_device = True

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True).clamp_min(EPS)
        return (x - mean) / std
