"""Video encoders: a per-frame CNN with causal temporal convolutions (VJ-VCR's Moving MNIST
encoder), and the frame decoder of the generative (pixel-predicting) baseline."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CausalTemporalConv(nn.Module):
    """A 1-D convolution over time that sees only the present and past frames (left padding),
    so a frame's representation never depends on the frames a predictor must predict.
    `[B, D, T] -> [B, D, T]`, with BatchNorm and ReLU."""

    def __init__(self, dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.pad = kernel - 1
        self.conv = nn.Conv1d(dim, dim, kernel, bias=False)
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.norm(self.conv(nn.functional.pad(x, (self.pad, 0)))))


class FrameCNN(nn.Module):
    """Per-frame encoder: `[B, T, C, H, W]` clips -> one latent per frame `[B, T, D]`.

    VJ-VCR's Moving MNIST encoder as the paper describes it: five layers with BatchNorm and
    ReLU — three spatial convolutions (stride 2), two temporal ones — and average pooling. The
    widths are ours (the paper gives none), and so is the pooling's size: average pooling to a
    `pool x pool` grid, flattened and mapped to D, because a global average would keep little of
    where a digit is, which is what its dynamics are about. The temporal convolutions are causal.

    Args:
        channels: input channels C (from the data's meta).
        dim: latent width D.
        widths: channels of the three spatial convolutions.
        pool: side of the average-pooled grid.
        temporal_kernel: frames each temporal convolution looks back over (itself included).
    """

    kind = "encoder"
    reads_features = True  # reads clips directly, no tokenizer

    def __init__(self, channels: int = 1, dim: int = 128, widths: tuple[int, int, int] = (32, 64, 64),
                 pool: int = 4, temporal_kernel: int = 3) -> None:
        super().__init__()
        self.dim = dim
        a, b, c = widths
        self.spatial = nn.Sequential(_conv_bn_relu(channels, a), _conv_bn_relu(a, b),
                                     _conv_bn_relu(b, c), nn.AdaptiveAvgPool2d(pool),
                                     nn.Flatten(), nn.Linear(c * pool * pool, dim))
        self.temporal = nn.Sequential(CausalTemporalConv(dim, temporal_kernel),
                                      CausalTemporalConv(dim, temporal_kernel))

    def forward(self, clips: Tensor, keep: Tensor | None = None) -> Tensor:
        b, t = clips.shape[:2]
        frames = self.spatial(clips.flatten(0, 1)).view(b, t, self.dim)  # [B, T, D]
        out = self.temporal(frames.transpose(1, 2)).transpose(1, 2)
        if keep is not None:
            out = torch.gather(out, 1, keep.unsqueeze(-1).expand(-1, -1, self.dim))
        return out


class FrameDecoder(nn.Module):
    """The pixel baseline's decoder: one latent `[..., D]` -> one frame `[..., C, H, W]` in
    [0, 1]: a linear map to a `2^upsamplings` times smaller grid, then transposed convolutions
    that each double it, up to `frame_size`."""

    kind = "decoder"

    def __init__(self, in_dim: int, channels: int = 1, frame_size: tuple[int, int] = (64, 64),
                 width: int = 64, upsamplings: int = 3) -> None:
        super().__init__()
        h, w = frame_size
        scale = 2 ** upsamplings
        if h % scale or w % scale:
            raise ValueError(f"frame_size {frame_size} is not divisible by 2^{upsamplings}")
        self.grid, self.width, self.channels = (h // scale, w // scale), width, channels
        self.frame_size = (h, w)
        self.project = nn.Linear(in_dim, width * self.grid[0] * self.grid[1])
        layers: list[nn.Module] = []
        for i in range(upsamplings):
            last = i == upsamplings - 1
            layers.append(nn.ConvTranspose2d(width, channels if last else width, 4, stride=2,
                                             padding=1))
            if not last:
                layers += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        self.up = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        x = self.project(z.reshape(-1, z.shape[-1])).view(-1, self.width, *self.grid)
        return torch.sigmoid(self.up(x)).view(*lead, self.channels, *self.frame_size)
