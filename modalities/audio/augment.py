"""BYOL-A's augmentations on log-mel batches `[B, 1, F, T]`, run on the training device.

Each module is called once per batch (BYOL stacks both views, `[2B, ...]`) and draws one set of
parameters per example from the batch's CPU generator, so a batch's views depend only on its seed,
whatever the device. The official code (Niizumi et al., nttcslab/byol-a) applies the same chain to
one example at a time; `benchmarks/bench_audio.py` measures the difference.

Order (`recipes/byol_a.yaml`): Mixup -> RandomResizeCrop -> RandomLinearFader (v2) -> batch
post-normalisation. Pre-normalisation with dataset statistics is the log-mel frontend's job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polyjepa.crops import random_windows

EPS = float(torch.finfo(torch.float32).eps)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _pair(values: Sequence[float]) -> tuple[float, float]:
    """Two values (a tuple, or a recipe's list) as a tuple."""
    first, second = values
    return first, second


def log_mixup_exp(x: Tensor, z: Tensor, lam: Tensor) -> Tensor:
    """Mix log-mel spectrograms in the linear (power) domain: `log((1 - λ) e^x + λ e^z + eps)`.

    Args:
        x, z: `[B, ...]` log-mel batches.
        lam: `[B]` mixing weights of `z`.
    """
    return mix_linear(x.exp(), z.exp(), lam)


def mix_linear(x: Tensor, z: Tensor, lam: Tensor) -> Tensor:
    """`log((1 - λ) x + λ z + eps)` of linear-domain batches `[B, ...]`, overwriting `x`."""
    lam = lam.view(-1, *([1] * (x.dim() - 1)))
    return x.mul_(1 - lam).addcmul_(lam, z).add_(EPS).log_()


class MixupMemory(nn.Module):
    """Mixup with a FIFO memory of past inputs (BYOL-A), mixed in the linear domain.

    Each example is mixed with a random memory entry, with weight λ ~ U[0, ratio); then the
    batch's unmixed inputs are pushed into the memory (oldest out). An empty memory mixes
    nothing. The memory holds entries in the linear domain (`exp` of the log-mel), so each
    batch takes one `exp` and one `log`. It is a buffer: it is checkpointed with the objective,
    so a resumed run mixes exactly as an uninterrupted one. Under DDP each process keeps its own
    memory.

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
        partners = self.memory[choice] if filled else None  # drawn before this batch is pushed
        linear = x.detach().exp()
        kept = linear[-size:]  # push (the newest `size` of) this batch, oldest entries out
        slots = (int(self.head) + torch.arange(kept.shape[0], device=x.device)) % size
        self.memory[slots] = kept.to(self.memory.dtype)
        self.head.fill_((int(self.head) + kept.shape[0]) % size)
        self.filled.fill_(min(filled + kept.shape[0], size))
        return x if partners is None else mix_linear(linear, partners, lam)


def _cubic_weights(t: Tensor, a: float = -0.75) -> Tensor:
    """Bicubic convolution weights of the 4 taps around fractional offsets `t [...]` -> `[..., 4]`
    (Keys' kernel with a = -0.75, as `F.interpolate(mode="bicubic")`)."""

    def near(x: Tensor) -> Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Tensor) -> Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def resize_taps(start: Tensor, size: Tensor, out: int, length: int,
                offset: int) -> tuple[Tensor, Tensor]:
    """Bicubic taps that crop `[start, start + size)` of a canvas and resize it to `out` samples
    with align-corners geometry, exactly as `F.interpolate(crop, mode="bicubic",
    align_corners=True)` does (taps clamped to the crop).

    The input of `length` samples sits at `offset` in the canvas; canvas samples outside it are
    zeros, so their weights are zero.

    Returns:
        `(index [B, out, 4] long into the input, weight [B, out, 4] float64)`.
    """
    steps = torch.arange(out, dtype=torch.float64)
    zero = torch.zeros(size.shape, dtype=torch.float64)
    scale = torch.where(size > 1, (size - 1) / max(out - 1, 1), zero)
    src = steps[None] * scale[:, None]  # [B, out], coordinates inside the crop
    base = src.floor()
    weight = _cubic_weights(src - base)  # [B, out, 4]
    taps = base[..., None].long() + torch.arange(-1, 3)  # [B, out, 4]
    taps = torch.minimum(taps.clamp_min(0), (size[:, None, None] - 1).long())  # clamp to crop
    index = taps + start[:, None, None].long() - offset  # input coordinates
    inside = (index >= 0) & (index < length)
    return index.clamp(0, length - 1), weight * inside


def resize_matrix(index: Tensor, weight: Tensor, length: int) -> Tensor:
    """Dense per-example resampling matrices, transposed: `[B, length, out]` from taps
    `[B, out, 4]`, so that `x [B, ..., length] @ matrix` resamples the last axis."""
    b, out, _ = index.shape
    matrix = torch.zeros(b, length, out)
    return matrix.scatter_add_(1, index.transpose(1, 2), weight.float().transpose(1, 2))


class RandomResizeCrop(nn.Module):
    """BYOL-A's random resize crop on a virtual canvas, batched as two matrix products.

    Each log-mel `[F, T]` sits in the middle of a zero canvas `[F * vf, T * vt]` (`vf, vt` =
    `virtual_crop_scale`); a crop of `h = F * U(freq_scale)`, `w = T * U(time_scale)` (clipped to
    the canvas) at a uniform position is resized back to `[F, T]` bicubically. Crop-then-resize is
    separable, so each example is `R_f @ x @ R_t^T` with per-example resampling matrices whose
    4-tap bicubic rows reproduce the official `F.interpolate(..., "bicubic", align_corners=True)`
    of the crop exactly (`R_f` is skipped where it is the identity).

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
        self.virtual_crop_scale = _pair(virtual_crop_scale)
        self.freq_scale, self.time_scale = _pair(freq_scale), _pair(time_scale)

    def crop_boxes(self, b: int, f: int, t: int, generator: torch.Generator) -> Tensor:
        """`[B, 4]` crops `(top, left, height, width)` in canvas pixels."""
        canvas_h, canvas_w = int(f * self.virtual_crop_scale[0]), int(t * self.virtual_crop_scale[1])
        h = (_uniform(b, *self.freq_scale, generator) * f).long().clamp(1, canvas_h)
        w = (_uniform(b, *self.time_scale, generator) * t).long().clamp(1, canvas_w)
        top = (torch.rand(b, generator=generator, dtype=torch.float64) * (canvas_h - h + 1)).long()
        left = (torch.rand(b, generator=generator, dtype=torch.float64) * (canvas_w - w + 1)).long()
        return torch.stack([top, left, h, w], dim=1)

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, c, f, t = x.shape
        top, left, h, w = self.crop_boxes(b, f, t, generator).unbind(1)
        y0 = (int(f * self.virtual_crop_scale[0]) - f) // 2  # the input's offset in the canvas
        x0 = (int(t * self.virtual_crop_scale[1]) - t) // 2
        cols = resize_matrix(*resize_taps(left, w, t, t, x0), t).to(x.device, x.dtype)  # [B, T, T]
        out = x @ cols[:, None]  # [B, C, F, T]; channels share their example's crop
        # a full-height crop of a canvas no taller than the input is the identity along
        # frequency (BYOL-A: about half the examples); resample only the others
        moved = ((h != f) | (top != y0)).nonzero().flatten().to(x.device)
        if moved.numel():
            rows = resize_matrix(*resize_taps(top[moved.cpu()], h[moved.cpu()], f, f, y0), f)
            rows = rows.to(x.device, x.dtype).transpose(1, 2)[:, None]  # [M, 1, F, F]
            out.index_copy_(0, moved, rows @ out.index_select(0, moved))
        return out


class TimeCrop(nn.Module):
    """A shorter window of each example, `[B, C, F, T] -> [B, C, F, round(fraction T)]`, at a
    uniform start per example (LeJEPA's local views: crops of a shorter duration; run it first in
    `local_augmentations`, then the chain the global views have)."""

    kind = "augmentation"
    on_device = True

    def __init__(self, fraction: float = 0.5) -> None:
        super().__init__()
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        self.fraction = fraction

    def forward(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return random_windows(x, max(1, round(self.fraction * x.shape[-1])), -1, generator)


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
        centred = x - x.mean(dim=dims, keepdim=True)
        # two passes (mean, then the norm of the centred batch): several times faster on CPU
        # than torch.std's single-pass Welford, and as accurate
        count = x.numel() // x.shape[1]
        norm = torch.linalg.vector_norm(centred, dim=dims, keepdim=True)
        return centred.div_((norm / math.sqrt(max(count - 1, 1))).clamp_min(EPS))
