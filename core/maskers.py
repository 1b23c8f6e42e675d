"""Maskers any modality can use: collate-time callables `(batch_size, generator) -> Masks`.

Each wraps a primitive of `polyjepa.masks` with the counts a recipe gives as ratios of the token
count N (taken from the dataset's `meta["num_tokens"]`). Counts are drawn once per batch so that
index sets stack; membership is drawn per sample.
"""

from __future__ import annotations

import torch

from polyjepa import masks
from polyjepa.registry import register
from polyjepa.types import Masks

Ratio = float | tuple[float, float]


@register("random_subsets", kind="masker")
class RandomSubsetMasker:
    """Random context subset and `num_targets` random target subsets from the rest (T-JEPA).

    Args:
        num_tokens: N, tokens per sample.
        context_ratio: share of N in the context, fixed or a (low, high) range sampled per batch.
        target_ratio: share of N in each target set, likewise; clipped so that context and target
            fit in N.
        num_targets: M, target sets per sample.
    """

    def __init__(self, num_tokens: int, context_ratio: Ratio = (0.15, 0.35),
                 target_ratio: Ratio = (0.15, 0.6), num_targets: int = 4) -> None:
        if num_tokens < 2:
            raise ValueError(f"random_subsets needs at least 2 tokens, got num_tokens={num_tokens}")
        self.num_tokens, self.num_targets = num_tokens, num_targets
        self.context_ratio, self.target_ratio = context_ratio, target_ratio

    def __call__(self, batch_size: int, generator: torch.Generator) -> Masks:
        n = self.num_tokens
        num_context = masks.count_from_ratio(self.context_ratio, n, generator, min_count=1)
        num_context = min(num_context, n - 1)
        num_target = masks.count_from_ratio(self.target_ratio, n, generator, min_count=1)
        num_target = min(num_target, n - num_context)
        return masks.random_subsets(batch_size, n, num_context, num_target, self.num_targets,
                                    generator)


@register("contiguous_spans", kind="masker")
class ContiguousSpanMasker:
    """`num_targets` contiguous runs of a sequence as targets; context from the rest.

    On a sequence whose order means something (time; Point-JEPA's proximity-ordered patches),
    contiguous runs are coherent blocks.

    Args:
        num_tokens: N, sequence length in tokens.
        target_ratio: share of N in each run, fixed or a (low, high) range sampled per batch
            (Point-JEPA: (0.15, 0.2)).
        num_targets: M, runs per sample.
        context: `random` | `contiguous` | `rest` (see `polyjepa.masks.contiguous_spans`).
        context_ratio: share of the uncovered tokens in the context, fixed or a range sampled
            per batch (Point-JEPA: (0.4, 0.75)); None keeps as many as every sample has (not
            used with `rest`).
        per_batch: one draw for the whole batch, as Point-JEPA's reference code.
    """

    def __init__(self, num_tokens: int, target_ratio: Ratio = (0.15, 0.2),
                 num_targets: int = 4, context: str = "random",
                 context_ratio: Ratio | None = None, per_batch: bool = False) -> None:
        if context not in masks.CONTEXTS:
            raise ValueError(f"context '{context}' is not one of {', '.join(masks.CONTEXTS)}")
        if context == "rest" and context_ratio is not None:
            raise ValueError("context 'rest' takes every uncovered token; drop context_ratio")
        self.num_tokens, self.target_ratio, self.num_targets = num_tokens, target_ratio, num_targets
        self.context, self.context_ratio, self.per_batch = context, context_ratio, per_batch

    def __call__(self, batch_size: int, generator: torch.Generator) -> Masks:
        n = self.num_tokens
        span = masks.count_from_ratio(self.target_ratio, n, generator, min_count=1)
        span = min(span, n - 1)
        share = None
        if self.context_ratio is not None:
            low, high = (self.context_ratio if isinstance(self.context_ratio, tuple | list)
                         else (self.context_ratio, self.context_ratio))
            share = masks.uniform(low, high, generator)
        return masks.contiguous_spans(batch_size, n, span, self.num_targets, generator,
                                      context=self.context, per_batch=self.per_batch,
                                      context_share=share)


@register("multiblock", kind="masker")
class MultiBlockMasker:
    """I-JEPA multi-block masking on a token grid (`meta["grid"]`, 2D or 3D).

    Args:
        grid: token grid shape, e.g. `(H, W)` or `(T, H, W)`.
        target_scale, target_aspect, num_targets, context_scale, min_keep: as in I-JEPA.
    """

    def __init__(self, grid: tuple[int, ...], target_scale: tuple[float, float] = (0.15, 0.2),
                 target_aspect: tuple[float, float] = (0.75, 1.5), num_targets: int = 4,
                 context_scale: tuple[float, float] = (0.85, 1.0), min_keep: int = 10) -> None:
        self.grid, self.num_targets, self.min_keep = tuple(grid), num_targets, min_keep
        self.target_scale, self.target_aspect = target_scale, target_aspect
        self.context_scale = context_scale

    def __call__(self, batch_size: int, generator: torch.Generator) -> Masks:
        return masks.multiblock(batch_size, self.grid, self.target_scale, self.target_aspect,
                                self.num_targets, self.context_scale, generator, self.min_keep)


@register("future", kind="masker")
class FutureMasker:
    """Past predicts future: the context is the first `context_steps` steps of a sequence, the
    target the next `target_steps` (VJ-VCR: 3 frames predict 12). A step holds
    `num_tokens // steps` tokens (one per frame for a per-frame encoder; a frame's patches for a
    tubelet tokenizer, whose grid `(T, H, W)` puts time first).

    Args:
        num_tokens: N, tokens per sample.
        context_steps, target_steps: steps (frames) of context and target.
        steps: steps in a sample; default N (one token per step), or the grid's first axis.
    """

    num_targets = 1
    deterministic = True  # the same split every batch: nothing is drawn

    def __init__(self, num_tokens: int, context_steps: int = 3, target_steps: int = 12,
                 steps: int | None = None, grid: tuple[int, ...] | None = None) -> None:
        steps = steps or (grid[0] if grid else num_tokens)
        if num_tokens % steps:
            raise ValueError(f"num_tokens={num_tokens} is not a whole number of tokens per step "
                             f"for {steps} steps")
        if context_steps < 1 or target_steps < 1 or context_steps + target_steps > steps:
            raise ValueError(f"context_steps={context_steps} + target_steps={target_steps} must "
                             f"fit in the {steps} steps of a sample, each >= 1")
        per_step = num_tokens // steps
        self.num_context, self.num_target = context_steps * per_step, target_steps * per_step
        self.num_tokens = num_tokens

    def __call__(self, batch_size: int, generator: torch.Generator) -> Masks:
        return masks.future_split(batch_size, self.num_tokens, self.num_context, self.num_target)
