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
    mixed = x.exp().mul_(1 - lam)  # in place on fresh tensors: half the memory traffic
    return mixed.addcmul_(lam, z.exp()).add_(EPS).log_()


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
    """Dense per-example resampling matrices `[B, out, length]` from taps `[B, out, 4]`."""
    b, out, _ = index.shape
    return torch.zeros(b, out, length).scatter_add_(2, index, weight.float())


class RandomResizeCrop(nn.Module):
    """BYOL-A's random resize crop on a virtual canvas, batched as two matrix products.

    Each log-mel `[F, T]` sits in the middle of a zero canvas `[F * vf, T * vt]` (`vf, vt` =
    `virtual_crop_scale`); a crop of `h = F * U(freq_scale)`, `w = T * U(time_scale)` (clipped to
    the canvas) at a uniform position is resized back to `[F, T]` bicubically. Crop-then-resize is
    separable, so each example is `R_f @ (x @ R_t^T)` with per-example resampling matrices whose
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
        b, c, f, t = x.shape
        top, left, h, w = self.crop_boxes(b, f, t, generator).unbind(1)
        y0 = (int(f * self.virtual_crop_scale[0]) - f) // 2  # the input's offset in the canvas
        x0 = (int(t * self.virtual_crop_scale[1]) - t) // 2
        cols = resize_matrix(*resize_taps(left, w, t, t, x0), t).to(x.device, x.dtype)  # [B, T, T]
        flat = x.reshape(b * c, f, t)  # channels share their example's crop
        out = torch.bmm(flat, cols.repeat_interleave(c, 0).transpose(1, 2))  # [B * C, F, T]
        # a full-height crop of a canvas no taller than the input is the identity along
        # frequency (BYOL-A: about half the examples); resample only the others
        moved = ((h != f) | (top != y0)).nonzero().flatten()
        if moved.numel():
            rows = resize_matrix(*resize_taps(top[moved], h[moved], f, f, y0), f)  # [M, F, F]
            rows = rows.to(x.device, x.dtype).repeat_interleave(c, 0)
            sel = (moved[:, None] * c + torch.arange(c)).flatten().to(x.device)
            out.index_copy_(0, sel, torch.bmm(rows, out.index_select(0, sel)))
        return out.view(b, c, f, t)


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
        std, mean = torch.std_mean(x, dim=dims, keepdim=True)
        return (x - mean).div_(std.clamp_min(EPS))
