"""Masks over the patches of series of different lengths: random patches, a contiguous span in
time, or the future. Drawn in the collate from the batch itself (`reads_input`), so that no
context or target token is padding."""

from __future__ import annotations

import torch
from torch import Tensor

from polyjepa.errors import DataError
from polyjepa.masks import sample_allowed
from polyjepa.types import Masks

MODES = ("random", "span", "future")


class PatchMasker:
    """Context and one target set of time steps (a step = the C' tokens of one patch index).

    Per sample, only the patches that start inside the series count (`length`); counts are set
    by the shortest series of the batch (`L` valid patches) so that index sets stack:

    * `random`: `round(mask_ratio * L)` target patches uniformly among each sample's valid
      ones; the context is `L - target` of the remaining valid ones (all of them when every
      series has the same length: TS-JEPA's masking);
    * `span`: one contiguous run of `round(mask_ratio * L)` patches at a uniform start inside
      each sample's valid patches; context as in `random`;
    * `future`: target = the last `round(mask_ratio * L)` of the first `L` patches, context =
      the patches before them (forecasting in latent space).

    Args:
        grid: `(N, C')` from the tokenizer's layout: patches and tokens per patch (time-major).
        stride: the patch hop, from the tokenizer's layout (maps series lengths to patches).
        mode: `random` | `span` | `future`.
        mask_ratio: share of the valid patches in the target.
    """

    kind = "masker"
    reads_input = True
    num_targets = 1

    def __init__(self, grid: tuple[int, int], stride: int, mode: str = "random",
                 mask_ratio: float = 0.7) -> None:
        if mode not in MODES:
            raise ValueError(f"mode '{mode}' is not one of {', '.join(MODES)}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {mask_ratio}")
        if grid[0] < 2:
            raise ValueError(f"masking needs at least 2 patches per series, the tokenizer makes "
                             f"{grid[0]}; lower model.tokenizer.patch")
        (self.steps, self.per_step), self.stride = tuple(grid), stride
        self.mode, self.mask_ratio = mode, mask_ratio

    def valid_patches(self, length: Tensor) -> Tensor:
        """`[B]` patches that start inside each series (at least 1)."""
        return ((length + self.stride - 1) // self.stride).clamp(1, self.steps)

    def __call__(self, x: dict[str, Tensor], generator: torch.Generator) -> Masks:
        valid = self.valid_patches(x["length"].cpu())  # [B]
        shortest = int(valid.min())
        if shortest < 2:
            raise DataError(f"a series of this batch is shorter than {self.stride + 1} steps and "
                            f"covers {shortest} patch; masking needs 2 (lower "
                            "model.tokenizer.patch, or set data.length_policy=auto or resample)")
        num_target = min(max(round(self.mask_ratio * shortest), 1), shortest - 1)
        b = len(valid)
        if self.mode == "future":
            context = torch.arange(shortest - num_target).expand(b, -1)
            target = torch.arange(shortest - num_target, shortest).expand(b, -1)
        else:
            allowed = torch.arange(self.steps)[None] < valid[:, None]  # [B, N]
            if self.mode == "random":
                target = sample_allowed(allowed, num_target, generator)
            else:
                room = (valid - num_target + 1).float()
                start = (torch.rand(b, generator=generator) * room).long()
                target = start[:, None] + torch.arange(num_target)
            free = allowed.scatter(1, target, False)
            context = sample_allowed(free, shortest - num_target, generator)
        return Masks(self._tokens(context), self._tokens(target)[:, None])

    def _tokens(self, steps: Tensor) -> Tensor:
        """Patch indices `[B, K]` -> the indices of their tokens `[B, K * C']` (time-major)."""
        tokens = steps[..., None] * self.per_step + torch.arange(self.per_step)
        return tokens.flatten(1).contiguous()
