import math

import pytest
import torch

from polyjepa.masks import (
    contiguous_spans,
    count_from_ratio,
    future_split,
    grid_blocks,
    multiblock,
    random_subsets,
)
from polyjepa.types import Masks


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_index_set(idx: torch.Tensor, num_tokens: int) -> None:
    """Long CPU indices in range, strictly ascending (so no duplicates) along the last dim."""
    assert idx.dtype == torch.long and idx.device.type == "cpu"
    assert idx.min() >= 0 and idx.max() < num_tokens
    assert (idx.diff(dim=-1) > 0).all()


def check_masks(masks: Masks, num_tokens: int) -> None:
    ctx, tgt = masks.context, masks.target
    assert ctx.dim() == 2 and tgt.dim() == 3 and ctx.shape[0] == tgt.shape[0]
    check_index_set(ctx, num_tokens)
    check_index_set(tgt, num_tokens)
    in_ctx = torch.zeros(ctx.shape[0], num_tokens, dtype=torch.bool).scatter(1, ctx, True)
    in_tgt = torch.zeros_like(in_ctx).scatter(1, tgt.flatten(1), True)
    assert not (in_ctx & in_tgt).any(), "context intersects a target set"
    for b in range(ctx.shape[0]):  # independent check with Python sets
        targets = set(tgt[b].flatten().tolist())
        assert not targets & set(ctx[b].tolist())


def coords(flat: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """`[..., K]` flat indices -> `[..., K, D]` grid coordinates (row-major)."""
    return torch.stack(torch.unravel_index(flat, grid), dim=-1)


# ---------------------------------------------------------------- random_subsets


@pytest.mark.parametrize("b,n,nc,nt,m", [(4, 10, 3, 4, 1), (8, 64, 20, 10, 4), (3, 5, 4, 1, 2),
                                         (2, 6, 1, 5, 3)])
def test_random_subsets_sizes_and_disjoint(b, n, nc, nt, m):
    masks = random_subsets(b, n, nc, nt, m, gen())
    assert masks.context.shape == (b, nc) and masks.target.shape == (b, m, nt)
    check_masks(masks, n)


def test_random_subsets_full_partition():
    # nc + nt == n: the single target must be exactly the complement of the context.
    masks = random_subsets(16, 12, 5, 7, 2, gen())
    for b in range(16):
        for t in masks.target[b]:
            assert sorted(t.tolist() + masks.context[b].tolist()) == list(range(12))


def test_random_subsets_uniform_over_positions():
    n, nc, nt, b = 20, 5, 6, 4000
    masks = random_subsets(b, n, nc, nt, 1, gen(1))
    ctx_freq = torch.bincount(masks.context.flatten(), minlength=n).float() / b
    tgt_freq = torch.bincount(masks.target.flatten(), minlength=n).float() / b
    # ~ 5 standard deviations; "take the first K" would give frequencies of 0 or 1.
    assert (ctx_freq - nc / n).abs().max() < 0.035
    assert (tgt_freq - nt / n).abs().max() < 0.035


def test_random_subsets_target_sets_independent():
    masks = random_subsets(64, 50, 10, 10, 2, gen())
    assert not torch.equal(masks.target[:, 0], masks.target[:, 1])


@pytest.mark.parametrize("kwargs,name", [
    (dict(num_context=6, num_target=5), "num_context"),
    (dict(num_context=0, num_target=5), "num_context"),
    (dict(num_context=3, num_target=0), "num_target"),
    (dict(num_context=3, num_target=3, num_targets=0), "num_targets"),
])
def test_random_subsets_errors(kwargs, name):
    args = dict(batch_size=2, num_tokens=10, num_targets=1, generator=gen()) | kwargs
    with pytest.raises(ValueError, match=name):
        random_subsets(**args)


# ---------------------------------------------------------------- count_from_ratio


def test_count_from_ratio_fixed_and_clipped():
    assert count_from_ratio(0.25, 100, gen()) == 25
    assert count_from_ratio(0.0, 100, gen()) == 1
    assert count_from_ratio(0.0, 100, gen(), min_count=7) == 7
    assert count_from_ratio(1.0, 100, gen()) == 100
    assert count_from_ratio(0.5, 7, gen()) == round(3.5)


def test_count_from_ratio_range():
    g = gen(3)
    counts = torch.tensor([count_from_ratio((0.2, 0.6), 100, g) for _ in range(2000)])
    assert counts.min() >= 20 and counts.max() <= 60
    assert counts.min() <= 22 and counts.max() >= 58  # the whole range is reached
    assert abs(counts.float().mean().item() - 40) < 1.0
    # One draw per call: the same seed gives the same count, used for the whole batch.
    c = count_from_ratio((0.2, 0.6), 100, gen(5))
    assert c == count_from_ratio((0.2, 0.6), 100, gen(5))
    assert c == count_from_ratio([0.2, 0.6], 100, gen(5))  # lists, as from a config
    masks = random_subsets(8, 100, c, 100 - c, 1, gen())
    assert masks.context.shape == (8, c)


@pytest.mark.parametrize("args,name", [
    (((0.5, 0.2), 10), "ratio"), ((1.5, 10), "ratio"), ((-0.1, 10), "ratio"),
    ((0.5, 0), "num_tokens"), ((0.5, 10, 11), "min_count"),
])
def test_count_from_ratio_errors(args, name):
    ratio, n, *rest = args
    with pytest.raises(ValueError, match=name):
        count_from_ratio(ratio, n, gen(), *rest)


# ---------------------------------------------------------------- contiguous_spans


@pytest.mark.parametrize("n,span,m", [(16, 4, 1), (32, 5, 3), (10, 9, 1), (8, 1, 4)])
def test_contiguous_spans(n, span, m):
    b = 64
    masks = contiguous_spans(b, n, span, m, gen())
    check_masks(masks, n)
    tgt = masks.target
    assert tgt.shape == (b, m, span)
    assert (tgt.diff(dim=-1) == 1).all()
    starts = tgt[..., 0]
    assert starts.min() == 0 and starts.max() == n - span  # both extremes reachable
    covered = torch.zeros(b, n, dtype=torch.bool).scatter(1, tgt.flatten(1), True)
    free = (~covered).sum(1)
    assert masks.context.shape[1] == free.min()  # default: the fewest free tokens


def test_contiguous_spans_context_sampled_not_truncated():
    n, span, m, nc, b = 24, 4, 2, 6, 4000
    masks = contiguous_spans(b, n, span, m, gen(2), num_context=nc)
    check_masks(masks, n)
    assert masks.context.shape == (b, nc)
    free = torch.ones(b, n, dtype=torch.bool).scatter(1, masks.target.flatten(1), False)
    last_free = n - 1 - free.flip(1).int().argmax(1)
    first_free = free.int().argmax(1)
    in_ctx = torch.zeros(b, n, dtype=torch.bool).scatter(1, masks.context, True)
    rows = torch.arange(b)
    p_last = in_ctx[rows, last_free].float().mean().item()
    p_first = in_ctx[rows, first_free].float().mean().item()
    expected = (nc / free.sum(1).float()).mean().item()
    # Truncating the sorted free list would never pick the last free token.
    assert abs(p_last - expected) < 0.03 and abs(p_first - expected) < 0.03


@pytest.mark.parametrize("kwargs,name", [
    (dict(span_length=10), "span_length"), (dict(span_length=0), "span_length"),
    (dict(num_targets=0), "num_targets"), (dict(num_context=9), "num_context"),
    (dict(num_context=0), "num_context"),
])
def test_contiguous_spans_errors(kwargs, name):
    args = dict(batch_size=4, num_tokens=10, span_length=3, num_targets=1,
                generator=gen()) | kwargs
    with pytest.raises(ValueError, match=name):
        contiguous_spans(**args)


def test_contiguous_spans_contiguous_context_is_a_run_of_the_free_tokens():
    """Point-JEPA's context: consecutive entries of the sorted uncovered positions."""
    n, span, m, b = 64, 10, 4, 500
    masks = contiguous_spans(b, n, span, m, gen(3), context="contiguous", context_share=0.5)
    check_masks(masks, n)
    free = torch.ones(b, n, dtype=torch.bool).scatter(1, masks.target.flatten(1), False)
    min_free = int(free.sum(1).min())
    assert masks.context.shape[1] == max(1, int(0.5 * min_free))
    for row in range(0, b, 25):
        positions = free[row].nonzero().flatten().tolist()
        ctx = masks.context[row].tolist()
        first = positions.index(ctx[0])
        assert ctx == positions[first:first + len(ctx)]  # a run of the free list
    starts = torch.tensor([int((free[r].cumsum(0) - 1)[masks.context[r, 0]]) for r in range(b)])
    assert starts.min() == 0 and starts.float().std() > 1  # uniform start, first reachable


def test_contiguous_spans_rest_takes_every_free_token_of_disjoint_targets():
    n, span, m, b = 40, 5, 4, 300
    masks = contiguous_spans(b, n, span, m, gen(4), context="rest")
    check_masks(masks, n)
    covered = torch.zeros(b, n, dtype=torch.bool).scatter(1, masks.target.flatten(1), True)
    assert (covered.sum(1) == span * m).all()  # targets never overlap
    assert masks.context.shape == (b, n - span * m)  # context = all the rest
    with pytest.raises(ValueError, match="no context"):
        contiguous_spans(2, 20, 5, 4, gen(), context="rest")


def test_contiguous_spans_per_batch_shares_one_draw():
    masks = contiguous_spans(8, 64, 10, 4, gen(5), context="contiguous", per_batch=True,
                             context_share=0.6)
    assert (masks.target == masks.target[:1]).all() and (masks.context == masks.context[:1]).all()
    free = torch.ones(64, dtype=torch.bool)
    free[masks.target[0].flatten()] = False
    assert masks.context.shape[1] == int(0.6 * int(free.sum()))  # exactly Point-JEPA's size


# ---------------------------------------------------------------- future_split


def test_future_split():
    masks = future_split(3, 10, 4, 5)
    check_masks(masks, 10)
    assert masks.context.tolist() == [[0, 1, 2, 3]] * 3
    assert masks.target.tolist() == [[[4, 5, 6, 7, 8]]] * 3


@pytest.mark.parametrize("args,name", [((2, 10, 6, 5), "num_context"), ((2, 10, 0, 5),
                                       "num_context"), ((2, 10, 3, 0), "num_target")])
def test_future_split_errors(args, name):
    with pytest.raises(ValueError, match=name):
        future_split(*args)


# ---------------------------------------------------------------- grid_blocks


@pytest.mark.parametrize("grid,block", [((12,), (5,)), ((6, 8), (2, 3)), ((5, 5), (5, 1)),
                                        ((4, 6, 5), (2, 3, 4)), ((3, 3, 3), (1, 1, 1))])
def test_grid_blocks_are_boxes(grid, block):
    b, m = 128, 3
    blocks = grid_blocks(b, grid, block, m, gen())
    assert blocks.shape == (b, m, math.prod(block))
    check_index_set(blocks, math.prod(grid))
    c = coords(blocks, grid)  # [B, M, K, D]
    lo = c.min(dim=2).values
    extent = c.max(dim=2).values - lo + 1
    assert (extent == torch.tensor(block)).all()
    # K distinct points inside a box with exactly K cells -> the box is full.
    for d in range(len(grid)):
        assert lo[..., d].min() == 0 and lo[..., d].max() == grid[d] - block[d]


@pytest.mark.parametrize("grid,block", [((4, 4), (5, 1)), ((4, 4), (2,)), ((4,), (0,)),
                                        ((2, 2, 2, 2), (1, 1, 1, 1))])
def test_grid_blocks_errors(grid, block):
    with pytest.raises(ValueError, match="grid" if len(grid) > 3 else "block"):
        grid_blocks(2, grid, block, 1, gen())


# ---------------------------------------------------------------- multiblock


def block_hw(target: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """`[B, M, K]` -> `[B, M, D]` extents, asserting each set is a full box."""
    c = coords(target, grid)
    extent = c.max(dim=2).values - c.min(dim=2).values + 1
    assert (extent.prod(-1) == target.shape[-1]).all()
    return extent


@pytest.mark.parametrize("aspect", [(0.75, 1.5), (1.5, 3.0), (0.3, 0.5)])
def test_multiblock_2d_shapes_scale_aspect(aspect):
    grid, scale = (32, 32), (0.1, 0.2)
    area = grid[0] * grid[1]
    for seed in range(30):
        masks = multiblock(16, grid, scale, aspect, 4, (0.85, 1.0), gen(seed))
        check_masks(masks, area)
        ext = block_hw(masks.target, grid)
        assert (ext == ext[0, 0]).all()  # one shape per batch
        h, w = ext[0, 0].tolist()
        # Before rounding h*, w* satisfy h*/w* in aspect and h*·w* / area in scale, |h-h*| <= .5
        assert (h - 0.5) * (w - 0.5) / area <= scale[1] and (h + 0.5) * (w + 0.5) / area >= scale[0]
        assert (h - 0.5) / (w + 0.5) <= aspect[1] and (h + 0.5) / (w - 0.5) >= aspect[0]


def test_multiblock_aspect_log_uniform():
    # Log-uniform on (1/2, 2) is tall half of the time; uniform would be tall 2/3 of the time.
    tall = wide = 0
    g = gen(7)
    for _ in range(400):
        masks = multiblock(1, (32, 32), (0.25, 0.25), (0.5, 2.0), 1, (1.0, 1.0), g)
        h, w = block_hw(masks.target, (32, 32))[0, 0].tolist()
        tall += h > w
        wide += h < w
    assert abs(tall - wide) < 0.2 * (tall + wide)


def test_multiblock_context_within_context_block():
    # context_scale 0.25 on 20x20 -> a 10x10 context block: the context fits inside it.
    grid = (20, 20)
    masks = multiblock(64, grid, (0.05, 0.1), (0.75, 1.5), 4, (0.25, 0.25), gen(4))
    check_masks(masks, 400)
    c = coords(masks.context, grid)
    assert ((c.amax(1) - c.amin(1) + 1) <= 10).all()
    assert masks.context.shape[1] >= 1


def test_multiblock_context_sampled_not_truncated():
    # A full-grid context block: the remaining tokens are exactly the non-target tokens.
    grid, b = (14, 14), 2000
    masks = multiblock(b, grid, (0.15, 0.2), (0.75, 1.5), 4, (1.0, 1.0), gen(4))
    check_masks(masks, 196)
    free = torch.ones(b, 196, dtype=torch.bool).scatter(1, masks.target.flatten(1), False)
    in_ctx = torch.zeros(b, 196, dtype=torch.bool).scatter(1, masks.context, True)
    assert masks.context.shape[1] == free.sum(1).min()
    rows = torch.arange(b)
    p_first = in_ctx[rows, free.int().argmax(1)].float().mean().item()
    p_last = in_ctx[rows, 195 - free.flip(1).int().argmax(1)].float().mean().item()
    expected = (masks.context.shape[1] / free.sum(1).float()).mean().item()
    # Truncating the sorted remaining list would (almost) never keep the last remaining token.
    assert abs(p_first - expected) < 0.04 and abs(p_last - expected) < 0.04


def test_multiblock_3d_tubes():
    grid = (4, 10, 12)
    masks = multiblock(8, grid, (0.1, 0.2), (0.75, 1.5), 3, (0.85, 1.0), gen())
    check_masks(masks, math.prod(grid))
    ext = block_hw(masks.target, grid)
    assert (ext[..., 0] == 4).all()  # each target spans the whole time axis
    # Config values arrive as lists; they behave like tuples.
    same = multiblock(8, list(grid), [0.1, 0.2], [0.75, 1.5], 3, [0.85, 1.0], gen())
    assert torch.equal(same.target, masks.target) and torch.equal(same.context, masks.context)


@pytest.mark.parametrize("kwargs,name", [
    (dict(target_scale=(0.5, 0.2)), "target_scale"),
    (dict(target_scale=(0.0, 0.2)), "target_scale"),
    (dict(context_scale=(0.9, 1.1)), "context_scale"),
    (dict(target_aspect=(0.0, 1.0)), "target_aspect"),
    (dict(grid=(8,)), "grid"), (dict(num_targets=0), "num_targets"),
    (dict(target_scale=(1.0, 1.0), target_aspect=(1.0, 1.0)), "target_scale"),
    (dict(min_keep=200), "min_keep"),
])
def test_multiblock_errors(kwargs, name):
    args = dict(batch_size=8, grid=(10, 10), target_scale=(0.1, 0.2), target_aspect=(0.75, 1.5),
                num_targets=2, context_scale=(0.85, 1.0), generator=gen()) | kwargs
    with pytest.raises(ValueError, match=name):
        multiblock(**args)


# ---------------------------------------------------------------- shared properties

MB = dict(target_scale=(0.1, 0.2), target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0))
SAMPLERS = {
    "random_subsets": lambda g: random_subsets(16, 40, 10, 8, 3, g),
    "contiguous_spans": lambda g: contiguous_spans(16, 40, 6, 2, g),
    "multiblock_2d": lambda g: multiblock(16, (10, 10), num_targets=3, generator=g, **MB),
    "multiblock_3d": lambda g: multiblock(16, (3, 8, 8), num_targets=2, generator=g, **MB),
    "grid_blocks": lambda g: Masks(grid_blocks(16, (6, 7), (2, 3), 1, g)[:, 0],
                                   grid_blocks(16, (6, 7), (2, 3), 2, g)),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_seeded_reproducibility(name):
    sample = SAMPLERS[name]
    a, b, c = sample(gen(11)), sample(gen(11)), sample(gen(12))
    assert torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
    assert not (torch.equal(a.context, c.context) and torch.equal(a.target, c.target))


@pytest.mark.parametrize("name", SAMPLERS)
def test_randomness_is_per_sample(name):
    masks = SAMPLERS[name](gen(0))
    for idx in (masks.context, masks.target):
        assert not (idx == idx[:1]).all(), "every sample of the batch got the same indices"
