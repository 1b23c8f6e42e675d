"""Tubelet tokenizer for a video ViT (V-JEPA style)."""

from __future__ import annotations

from torch import Tensor, nn

from polyjepa.posembed import sincos_grid
from polyjepa.types import Tokens


class TubeletPatches(nn.Module):
    """Clips `[B, T, C, H, W]` -> non-overlapping `tubelet x patch x patch` tokens `[B, N, D]`
    with fixed 3-D sin-cos positions (V-JEPA's patch embedding).

    Tokens are ordered time-major on the grid `(T // tubelet, H // patch, W // patch)`
    (`layout["grid"]`), so the `future` masker splits them by time step and the `multiblock`
    masker draws spatio-temporal tubes; frames or pixels beyond a whole tubelet are dropped.

    Args:
        channels: input channels C (from the data's meta).
        num_frames: T of the clips (from the data's meta).
        frame_size: `[H, W]` of the clips (from the data's meta).
        dim: token width D, divisible by 12 for the 3-D positions.
        patch: spatial side p of a tubelet.
        tubelet: frames t per tubelet.
    """

    kind = "tokenizer"

    def __init__(self, channels: int, num_frames: int, frame_size: tuple[int, int],
                 dim: int = 192, patch: int = 16, tubelet: int = 2) -> None:
        super().__init__()
        h, w = frame_size
        grid = (num_frames // tubelet, h // patch, w // patch)
        if min(grid) < 1:
            raise ValueError(f"clips of {num_frames} x {h} x {w} hold no {tubelet} x {patch} x "
                             f"{patch} tubelet; lower model.tokenizer.tubelet / patch")
        self.dim, self.patch, self.tubelet, self.grid = dim, patch, tubelet, grid
        self.proj = nn.Conv3d(channels, dim, (tubelet, patch, patch), stride=(tubelet, patch, patch))
        self.register_buffer("pos", sincos_grid(grid, dim), persistent=False)
        self.layout = {"grid": grid, "num_tokens": grid[0] * grid[1] * grid[2]}
        weight = self.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))  # as a linear layer (MAE, V-JEPA)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tokens:
        t, p = self.grid[0] * self.tubelet, self.patch
        x = x[:, :t, :, : self.grid[1] * p, : self.grid[2] * p]
        h = self.proj(x.transpose(1, 2))  # [B, D, T', H', W']
        return Tokens(x=h.flatten(2).transpose(1, 2), pos=self.pos)

