"""Plain data carried between the stages of a run: tokens, masks and batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

import torch
from torch import Tensor

RawInput: TypeAlias = Tensor | dict[str, Tensor]
"""What a modality's dataset yields as `x`: one tensor, or named tensors (e.g. tabular
`{"num": [F_num] float, "cat": [F_cat] long}`)."""


@dataclass
class Tokens:
    """Output of a tokenizer.

    Attributes:
        x: token embeddings `[B, N, D]`.
        pos: positional embedding in the same width, `[N, D]` (shared by the batch) or `[B, N, D]`.
            Encoders add it to `x`; predictors project it to their own width to place mask tokens.
        pad_mask: `[B, N]`, True where a token is padding, or None when every token is real.
    """

    x: Tensor
    pos: Tensor
    pad_mask: Tensor | None = None

    def batch_pos(self) -> Tensor:
        """Positional embedding expanded to `[B, N, D]`."""
        if self.pos.dim() == 2:
            return self.pos.unsqueeze(0).expand(self.x.shape[0], -1, -1)
        return self.pos


@dataclass
class Masks:
    """Index sets chosen by a masker for one batch (context ∩ target = ∅ per sample).

    Attributes:
        context: `[B, Nc]` long, token indices the context encoder sees.
        target: `[B, M, Nt]` long, `M` target sets per sample whose latents are predicted.
    """

    context: Tensor
    target: Tensor

    def to(self, device: torch.device | str) -> Masks:
        return Masks(self.context.to(device, non_blocking=True), self.target.to(device, non_blocking=True))


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        x: the raw input, batched (`RawInput` with a leading batch dimension).
        y: labels `[B]`: class indices (long; -1 where a sample has none), or regression
            targets (float; NaN where a sample has none).
        masks: index sets for JEPA objectives, sampled in the collate.
        views: augmented views for BYOL-style objectives (each a `RawInput`), sampled in the collate.
        skipped: samples of this batch dropped because they failed to load (`data.on_error=skip`).
        seed: the batch seed every random choice of this batch derives from (device-side
            augmentations draw their parameters from it too).
    """

    x: RawInput
    y: Tensor
    masks: Masks | None = None
    views: list[RawInput] = field(default_factory=list)
    skipped: int = 0
    seed: int = 0

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            x=to_device(self.x, device),
            y=self.y.to(device, non_blocking=True),
            masks=None if self.masks is None else self.masks.to(device),
            views=[to_device(v, device) for v in self.views],
            skipped=self.skipped,
            seed=self.seed,
        )


def to_device(x: RawInput, device: torch.device | str) -> RawInput:
    """Move one tensor or a dict of tensors to `device`."""
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def batch_size_of(x: RawInput) -> int:
    """Leading dimension of a batched `RawInput`."""
    return next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]
