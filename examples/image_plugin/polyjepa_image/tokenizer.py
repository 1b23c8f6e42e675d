"""ViT patch embedding: `[B, C, S, S]` images -> `Tokens [B, (S/p)^2, D]` with fixed 2-D sin-cos
positions (I-JEPA's), and the patch grid for polyjepa's `multiblock` masker."""

from __future__ import annotations

from torch import Tensor, nn

from polyjepa import Tokens
from polyjepa.posembed import sincos_grid


class PatchTokenizer(nn.Module):
    """Non-overlapping `patch` x `patch` patches, each a linear map (a strided convolution).

    Args:
        in_channels: image channels (from the data's meta).
        image_size: side `S` of the (square) images (from the data's meta).
        dim: token width `D`.
        patch: patch side `p`; `S` must be a multiple of it.
    """

    kind = "tokenizer"

    def __init__(self, in_channels: int, image_size: int, dim: int = 192, patch: int = 4) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of patch={patch}")
        side = image_size // patch
        self.dim = dim
        self.layout = {"grid": (side, side), "num_tokens": side * side}
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.register_buffer("pos", sincos_grid((side, side), dim), persistent=False)

    def forward(self, x: Tensor) -> Tokens:
        return Tokens(self.proj(x).flatten(2).transpose(1, 2), self.pos)  # [B, N, D]
