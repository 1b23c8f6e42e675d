"""Masking primitives for JEPA objectives: sample context / target token index sets.

Vectorised over the batch, randomness only from an explicit CPU `torch.Generator`; outputs are
CPU long index sets sorted ascending, of equal size across the batch (stackable), and per sample
the context never intersects any target set.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polyjepa.types import Masks

MAX_TRIES = 20
"""Draws of a whole batch's blocks before `multiblock` gives up on `min_keep` (I-JEPA retries
too; a failure after this many draws means the settings cannot work on this grid)."""


def _check_positive(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _check_fits(num_context: int, num_target: int, num_tokens: int) -> None:
    if num_context + num_target > num_tokens:
        raise ValueError(f"num_context + num_target ({num_context} + {num_target}) exceeds "
                         f"num_tokens={num_tokens}; lower num_context or num_target")


def sample_allowed(allowed: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """`k` distinct indices per row drawn uniformly among the True entries of `allowed` `[B, N]`.

    Returns `[B, k]` long, sorted ascending. The caller guarantees every row has >= k True.
    """
    keys = torch.rand(allowed.shape, generator=generator).masked_fill_(~allowed, 2.0)
    return keys.topk(k, dim=1, largest=False).indices.sort(dim=1).values


def uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    """A float drawn uniformly in [lo, hi) from `generator`."""
    return lo + (hi - lo) * torch.rand(1, generator=generator).item()


def _check_range(name: str, value: tuple[float, float], lo: float, hi: float) -> None:
    if not (len(value) == 2 and lo < value[0] <= value[1] <= hi):
        raise ValueError(f"{name} must be (low, high) with {lo} < low <= high <= {hi}, got {value}")


def random_subsets(batch_size: int, num_tokens: int, num_context: int, num_target: int,
                   num_targets: int, generator: torch.Generator) -> Masks:
    """Uniformly random context and target sets (target sets may overlap each other, as in I-JEPA).

    Args:
        batch_size: `B`.
        num_tokens: `N`, tokens per sample.
        num_context: `Nc`, context tokens per sample.
        num_target: `Nt`, tokens per target set, drawn from the tokens outside the context.
        num_targets: `M`, target sets per sample.
        generator: source of randomness.

    Returns:
        `Masks(context=[B, Nc], target=[B, M, Nt])`.

    Raises:
        ValueError: a count is < 1, or `num_context + num_target > num_tokens`.
    """
    _check_positive(batch_size=batch_size, num_tokens=num_tokens, num_context=num_context,
                    num_target=num_target, num_targets=num_targets)
    _check_fits(num_context, num_target, num_tokens)
    all_tokens = torch.ones(batch_size, num_tokens, dtype=torch.bool)
    context = sample_allowed(all_tokens, num_context, generator)
    free = all_tokens.scatter(1, context, False)
    target = torch.stack([sample_allowed(free, num_target, generator)
                          for _ in range(num_targets)], dim=1)
    return Masks(context, target)


def count_from_ratio(ratio: float | tuple[float, float], num_tokens: int,
                     generator: torch.Generator, min_count: int = 1) -> int:
    """Token count `round(r * num_tokens)` clipped to `[min_count, num_tokens]`.

    Args:
        ratio: a fraction `r` in [0, 1], or a `(low, high)` range (tuple or list) from which `r`
            is drawn uniformly once (one count per batch, so every sample's sets stack).
        num_tokens: `N`.
        generator: source of randomness (used only when `ratio` is a range).
        min_count: lower clip.

    Returns:
        The count, an int in `[min_count, num_tokens]`.

    Raises:
        ValueError: `ratio` outside [0, 1] or an unordered range, `num_tokens < 1`, or
            `min_count` outside `[0, num_tokens]`.
    """
    _check_positive(num_tokens=num_tokens)
    if not 0 <= min_count <= num_tokens:
        raise ValueError(f"min_count must be in [0, num_tokens={num_tokens}], got {min_count}")
    if isinstance(ratio, tuple | list):
        if not (len(ratio) == 2 and 0 <= ratio[0] <= ratio[1] <= 1):
            raise ValueError(f"ratio range must be (low, high), 0 <= low <= high <= 1: {ratio}")
        ratio = uniform(ratio[0], ratio[1], generator)
    elif not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return min(max(round(ratio * num_tokens), min_count), num_tokens)


CONTEXTS = ("random", "contiguous", "rest")


def _non_overlapping_starts(rows: int, num_tokens: int, span_length: int, num_targets: int,
                            generator: torch.Generator) -> Tensor:
    """`[rows, M]` starts of `M` disjoint runs of `L` tokens in `N`: sorted gaps drawn in the
    `N - M * L` tokens of slack, then shuffled so target order carries no position."""
    slack = num_tokens - span_length * num_targets
    gaps = torch.randint(0, slack + 1, (rows, num_targets), generator=generator).sort(1).values
    starts = gaps + span_length * torch.arange(num_targets)
    order = torch.rand(rows, num_targets, generator=generator).argsort(1)
    return starts.gather(1, order)


def _contiguous_in_free(free: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Per row, `count` consecutive entries of the ascending list of free positions, from a
    uniform start (Point-JEPA's context: contiguous in the sequence with targets taken out)."""
    n = free.shape[1]
    positions = torch.arange(n).expand_as(free)
    free_first = torch.where(free, positions, positions + n).sort(1).values  # free ones first
    room = free.sum(1) - count + 1  # [rows] admissible starts
    start = (torch.rand(free.shape[0], generator=generator) * room).long()
    return free_first.gather(1, start[:, None] + torch.arange(count))


def contiguous_spans(batch_size: int, num_tokens: int, span_length: int, num_targets: int,
                     generator: torch.Generator, num_context: int | None = None,
                     context: str = "random", per_batch: bool = False,
                     context_share: float | None = None) -> Masks:
    """Contiguous target spans on a 1D sequence; the context is taken from the uncovered tokens.

    Each target set is a run of `span_length` tokens at a uniformly random start (runs may
    overlap, except with `context="rest"`). The context is, among the uncovered tokens:

    * `random`: `num_context` of them uniformly at random (I-JEPA instead truncates the sorted
      free list, which biases the context toward early tokens);
    * `contiguous`: `num_context` consecutive ones of their ascending list, from a uniform start
      (Point-JEPA; on a proximity-ordered sequence, one spatially coherent region);
    * `rest`: all of them; targets are then drawn disjoint so every sample keeps
      `N - M * L` context tokens.

    Args:
        batch_size: `B`.
        num_tokens: `N`, sequence length.
        span_length: `L`, tokens per target span, `1 <= L < N`.
        num_targets: `M`, spans per sample.
        generator: source of randomness.
        num_context: `Nc` (not with `rest`); default the fewest uncovered tokens over the batch.
        context_share: instead of `num_context`, this share (floor, at least 1) of the fewest
            uncovered tokens over the batch (with `per_batch`, of the uncovered tokens: exactly
            Point-JEPA's context size).
        context: `random` | `contiguous` | `rest`.
        per_batch: one draw shared by every sample (Point-JEPA's reference code), instead of
            one per sample.

    Returns:
        `Masks(context=[B, Nc], target=[B, M, L])`.

    Raises:
        ValueError: bad counts, or some sample has fewer than `num_context` (or zero) uncovered
            tokens; the latter depends on the draw, and is avoided by keeping
            `num_context <= num_tokens - span_length * num_targets`.
    """
    _check_positive(batch_size=batch_size, num_tokens=num_tokens, span_length=span_length,
                    num_targets=num_targets)
    if context not in CONTEXTS:
        raise ValueError(f"context '{context}' is not one of {', '.join(CONTEXTS)}")
    if span_length >= num_tokens:
        raise ValueError(f"span_length={span_length} must be < num_tokens={num_tokens} to leave "
                         f"context tokens; lower span_length")
    rows = 1 if per_batch else batch_size
    if context == "rest":
        if num_context is not None:
            raise ValueError("context='rest' takes every uncovered token; leave num_context unset")
        if span_length * num_targets >= num_tokens:
            raise ValueError(f"{num_targets} disjoint spans of {span_length} leave no context in "
                             f"{num_tokens} tokens; lower span_length or num_targets")
        starts = _non_overlapping_starts(rows, num_tokens, span_length, num_targets, generator)
        starts = starts.unsqueeze(-1)
    else:
        starts = torch.randint(0, num_tokens - span_length + 1, (rows, num_targets, 1),
                               generator=generator)
    target = starts + torch.arange(span_length)  # [rows, M, L]
    free = torch.ones(rows, num_tokens, dtype=torch.bool).scatter(1, target.flatten(1), False)
    min_free = int(free.sum(1).min())
    if context == "rest":
        chosen = free.nonzero()[:, 1].view(rows, min_free)
    else:
        if context_share is not None:
            if num_context is not None or not 0 < context_share <= 1:
                raise ValueError(f"context_share={context_share} must lie in (0, 1] and replaces "
                                 "num_context")
            num_context = max(1, math.floor(context_share * min_free))
        num_context = min_free if num_context is None else num_context
        if not 1 <= num_context <= min_free:
            raise ValueError(f"num_context={num_context} must be in [1, {min_free}] (fewest "
                             f"uncovered tokens in this batch); lower num_context, span_length "
                             f"or num_targets")
        chosen = (sample_allowed(free, num_context, generator) if context == "random"
                  else _contiguous_in_free(free, num_context, generator))
    if per_batch:
        chosen, target = chosen.expand(batch_size, -1), target.expand(batch_size, -1, -1)
    return Masks(chosen.contiguous(), target.contiguous())


def future_split(batch_size: int, num_tokens: int, num_context: int, num_target: int) -> Masks:
    """Deterministic past/future split: context = first `Nc` tokens, one target = the next `Nt`.

    Args:
        batch_size, num_tokens, num_context, num_target: `B`, `N`, `Nc`, `Nt`.

    Returns:
        `Masks(context=[B, Nc], target=[B, 1, Nt])`.

    Raises:
        ValueError: a count is < 1, or `num_context + num_target > num_tokens`.
    """
    _check_positive(batch_size=batch_size, num_tokens=num_tokens, num_context=num_context,
                    num_target=num_target)
    _check_fits(num_context, num_target, num_tokens)
    context = torch.arange(num_context).repeat(batch_size, 1)
    target = torch.arange(num_context, num_context + num_target).repeat(batch_size, 1, 1)
    return Masks(context, target)


def grid_blocks(batch_size: int, grid: tuple[int, ...], block: tuple[int, ...],
                num_targets: int, generator: torch.Generator) -> Tensor:
    """Axis-aligned blocks at uniformly random positions on a 1D/2D/3D token grid.

    Args:
        batch_size: `B`.
        grid: grid shape, e.g. `(H, W)`; tokens are flattened row-major.
        block: block shape, same length as `grid`, each side in `[1, grid side]`.
        num_targets: `M`, blocks per sample (placed independently, may overlap).
        generator: source of randomness.

    Returns:
        `[B, M, prod(block)]` long flat token indices, sorted ascending within each block.

    Raises:
        ValueError: `grid` not 1-3 dims, `block` of another length or larger than `grid`.
    """
    _check_positive(batch_size=batch_size, num_targets=num_targets)
    if not 1 <= len(grid) <= 3 or min(grid) < 1:
        raise ValueError(f"grid must have 1 to 3 positive sides, got {grid}")
    if len(block) != len(grid) or not all(1 <= b <= g for b, g in zip(block, grid, strict=True)):
        raise ValueError(f"block must have one side per grid dim with 1 <= side <= grid side, "
                         f"got block={block} for grid={grid}; shrink block")
    offsets = torch.cartesian_prod(*(torch.arange(b) for b in block)).reshape(-1, len(block))
    strides = [math.prod(grid[d + 1:]) for d in range(len(grid))]
    flat = torch.zeros(batch_size, num_targets, offsets.shape[0], dtype=torch.long)
    for d, (g, b) in enumerate(zip(grid, block, strict=True)):
        start = torch.randint(0, g - b + 1, (batch_size, num_targets, 1), generator=generator)
        flat += (start + offsets[:, d]) * strides[d]
    return flat


def _block_shape(scale: float, aspect: float, height: int, width: int) -> tuple[int, int]:
    area = scale * height * width
    h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    return min(max(h, 1), height), min(max(w, 1), width)


def multiblock(batch_size: int, grid: tuple[int, ...], target_scale: tuple[float, float],
               target_aspect: tuple[float, float], num_targets: int,
               context_scale: tuple[float, float], generator: torch.Generator,
               min_keep: int = 1) -> Masks:
    """I-JEPA multi-block masking on a `(H, W)` grid, or V-JEPA-style tubes on a `(T, H, W)` grid.

    Once per batch: a target block shape `(h, w)` with area `scale * H * W`, scale uniform in
    `target_scale` and aspect `h / w` log-uniform in `target_aspect`, and a square-ish context
    block with area from `context_scale`, both clipped to the grid (on 3D grids blocks span all
    `T`). Per sample: `M` target blocks and one context block at random positions; the context is
    the context block minus every target token, subsampled uniformly at random to the fewest
    remaining count `K` over the batch. A draw with `K < min_keep` is redrawn (the whole batch,
    up to `MAX_TRIES` times; then it raises).

    Args:
        batch_size: `B`.
        grid: `(H, W)` or `(T, H, W)`; tokens are flattened row-major.
        target_scale: `(low, high)` fraction of the `H * W` area per target block, in (0, 1].
        target_aspect: `(low, high)` range of `h / w`, positive.
        num_targets: `M`, target blocks per sample.
        context_scale: `(low, high)` fraction of the `H * W` area of the context block.
        generator: source of randomness.
        min_keep: minimum context size `K`.

    Returns:
        `Masks(context=[B, K], target=[B, M, (T *) h * w])`.

    Raises:
        ValueError: bad arguments, or `K < min_keep` for this draw.
    """
    _check_positive(batch_size=batch_size, num_targets=num_targets, min_keep=min_keep)
    if len(grid) not in (2, 3) or min(grid) < 1:
        raise ValueError(f"grid must be (H, W) or (T, H, W) with positive sides, got {grid}")
    _check_range("target_scale", target_scale, 0.0, 1.0)
    _check_range("context_scale", context_scale, 0.0, 1.0)
    _check_range("target_aspect", target_aspect, 0.0, math.inf)
    time, (height, width) = tuple(grid[:-2]), grid[-2:]
    for _ in range(MAX_TRIES):
        log_aspect = uniform(math.log(target_aspect[0]), math.log(target_aspect[1]), generator)
        target_hw = _block_shape(uniform(*target_scale, generator), math.exp(log_aspect),
                                 height, width)
        context_hw = _block_shape(uniform(*context_scale, generator), 1.0, height, width)
        target = grid_blocks(batch_size, grid, time + target_hw, num_targets, generator)
        context_block = grid_blocks(batch_size, grid, time + context_hw, 1, generator)
        keep = torch.zeros(batch_size, math.prod(grid), dtype=torch.bool)
        keep.scatter_(1, context_block[:, 0], True).scatter_(1, target.flatten(1), False)
        k = int(keep.sum(1).min())
        if k >= min_keep:
            return Masks(sample_allowed(keep, k, generator), target)
    raise ValueError(f"only {k} context tokens remained in some sample after {MAX_TRIES} draws "
                     f"(min_keep={min_keep}); lower target_scale or num_targets, or raise "
                     "context_scale")


def stripes(batch_size: int, grid: tuple[int, int], axis: int, width: int, num_targets: int,
            generator: torch.Generator) -> Tensor:
    """Full-extent stripes on a 2D token grid: `M` bands of `width` rows (`axis=0`) or columns
    (`axis=1`) that span the whole other axis (A-JEPA's frequency bands and time stripes on a
    frequency-major spectrogram grid).

    Args:
        batch_size: `B`.
        grid: `(H, W)`, tokens flattened row-major.
        axis: 0 for bands of rows, 1 for bands of columns.
        width: rows (or columns) per stripe, in `[1, grid[axis]]`.
        num_targets: `M`, stripes per sample (placed independently, may overlap).
        generator: source of randomness.

    Returns:
        `[B, M, width * W]` (axis 0) or `[B, M, H * width]` (axis 1) long flat indices.
    """
    if len(grid) != 2 or axis not in (0, 1):
        raise ValueError(f"stripes need a 2D grid and axis 0 or 1, got grid={grid}, axis={axis}")
    block = (width, grid[1]) if axis == 0 else (grid[0], width)
    return grid_blocks(batch_size, grid, block, num_targets, generator)


def context_outside(target: Tensor, num_tokens: int, generator: torch.Generator,
                    min_keep: int = 1) -> Masks:
    """Masks whose context is every token no target covers, subsampled uniformly at random to
    the fewest such tokens over the batch (so the context sets stack).

    Args:
        target: `[B, M, Nt]` target indices.
        num_tokens: `N`.
        generator: source of randomness.
        min_keep: smallest acceptable context.

    Raises:
        ValueError: some sample keeps fewer than `min_keep` context tokens.
    """
    free = torch.ones(target.shape[0], num_tokens, dtype=torch.bool)
    free.scatter_(1, target.flatten(1), False)
    k = int(free.sum(1).min())
    if k < max(min_keep, 1):
        raise ValueError(f"only {k} context tokens remain in some sample (min_keep={min_keep}); "
                         "lower the target sizes or num_targets")
    return Masks(sample_allowed(free, k, generator), target)
