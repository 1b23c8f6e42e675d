"""A-JEPA's maskers (time-frequency stripes, curriculum) and the core mask primitives they use.

(Named test_audio_maskers.py: tests/test_maskers.py already owns the module name test_maskers.)
"""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa import masks
from polyjepa.data import Collate
from polyjepa.modalities.audio.maskers import (
    CurriculumMasker,
    TimeFrequencyMasker,
    curriculum_probability,
)
from polyjepa.types import Masks

# A-JEPA's settings (recipes/a_jepa.yaml)
BLOCK = {"target_scale": (0.15, 0.2), "target_aspect": (0.75, 1.5), "num_targets": 4,
         "context_scale": (0.85, 1.0), "min_keep": 10}
TIME_FREQUENCY = {"num_targets": 3, "target_scale": (0.05, 0.075), "min_keep": 10}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def stripe_kind(target: torch.Tensor, grid: tuple[int, int]) -> tuple[int, int]:
    """`(axis, width)` of one target's indices if they form a full stripe: `width` contiguous
    whole rows (axis 0) or whole columns (axis 1); raises AssertionError otherwise."""
    h, w = grid
    idx = set(target.tolist())
    assert len(idx) == target.numel(), "duplicate indices in a target"
    rows = sorted({i // w for i in idx})
    cols = sorted({i % w for i in idx})
    assert idx == {r * w + c for r in rows for c in cols}, "not a rectangle"
    if len(cols) == w and len(rows) < h:
        axis, lines = 0, rows
    elif len(rows) == h and len(cols) < w:
        axis, lines = 1, cols
    else:
        raise AssertionError(f"not a stripe: rows {rows}, cols {cols}")
    assert lines == list(range(lines[0], lines[0] + len(lines))), "stripe not contiguous"
    return axis, len(lines)


def check_context(m: Masks, num_tokens: int) -> None:
    """Context disjoint from every target; all uncovered tokens where the count allows it."""
    k = m.context.shape[1]
    assert k >= 1
    for b in range(m.context.shape[0]):
        ctx = m.context[b].tolist()
        assert len(set(ctx)) == len(ctx) and ctx == sorted(ctx)
        covered = set(m.target[b].flatten().tolist())
        uncovered = set(range(num_tokens)) - covered
        assert not set(ctx) & covered
        assert set(ctx) <= uncovered
        if len(uncovered) == k:
            assert set(ctx) == uncovered


# ----------------------------------------------------------------------------- time_frequency


@pytest.mark.parametrize("grid", [(8, 64), (8, 6)])
def test_time_frequency_targets_are_full_stripes(grid):
    masker = TimeFrequencyMasker(grid, num_targets=3, target_scale=(0.05, 0.075), min_keep=4)
    n = math.prod(grid)
    axes = set()
    for seed in range(60):
        m = masker(16, gen(seed))
        assert m.target.shape[:2] == (16, 3)
        kinds = {stripe_kind(t, grid) for t in m.target.flatten(0, 1)}
        assert len(kinds) == 1  # one kind and width per batch
        axis, width = kinds.pop()
        axes.add(axis)
        assert m.target.shape[2] == width * (grid[1] if axis == 0 else grid[0])
        check_context(m, n)
        # the context is as large as the sample with the most coverage allows
        free = [n - len(set(m.target[b].flatten().tolist())) for b in range(16)]
        assert m.context.shape[1] == min(free)
    assert axes == {0, 1}  # frequency bands and time stripes both occur


def test_time_frequency_is_deterministic_per_seed():
    masker = TimeFrequencyMasker((8, 64))
    a, b, c = masker(8, gen(3)), masker(8, gen(3)), masker(8, gen(4))
    assert torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
    assert not (a.target.shape == c.target.shape and torch.equal(a.target, c.target))


@pytest.mark.parametrize("grid, scale", [((8, 64), (0.05, 0.075)), ((8, 6), (0.05, 0.075)),
                                         ((8, 64), (0.2, 0.3)), ((16, 40), (0.3, 0.5))])
def test_time_frequency_stripe_width_follows_target_scale(grid, scale):
    """width = clip(round(scale * side), 1, side - 1), scale ~ U(target_scale) once per batch
    (replayed from the generator: axis first, then scale)."""
    masker = TimeFrequencyMasker(grid, num_targets=2, target_scale=scale, min_keep=1)
    for seed in range(40):
        m = masker(4, gen(seed))
        axis, width = stripe_kind(m.target[0, 0], grid)
        g = gen(seed)
        expected_axis = int(torch.randint(0, 2, (), generator=g))
        s = scale[0] + (scale[1] - scale[0]) * float(torch.rand((), generator=g))
        side = grid[expected_axis]
        assert axis == expected_axis
        assert width == min(max(round(s * side), 1), side - 1)
        # the share of the grid per stripe is within target_scale, up to rounding
        assert (width == 1 or scale[0] - 0.5 / side <= width / side) and \
            (width == 1 or width / side <= scale[1] + 0.5 / side)


def test_time_frequency_rejects_bad_settings():
    with pytest.raises(ValueError, match="grid"):
        TimeFrequencyMasker((1, 64))
    with pytest.raises(ValueError, match="target_scale"):
        TimeFrequencyMasker((8, 64), target_scale=(0.5, 1.0))


# ----------------------------------------------------------------------------- curriculum


def test_curriculum_probability_schedule():
    c0, total = 0.01, 1000
    values = [curriculum_probability(s, total, c0) for s in range(0, total + 1, 10)]
    assert values[0] == pytest.approx(c0)
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == 1.0 and curriculum_probability(2 * total, total, c0) == 1.0
    for s in (1, 100, 250, 640):
        expected = min(1.0, math.sqrt(s * (1 - c0**2) / total + c0**2))
        assert curriculum_probability(s, total, c0) == pytest.approx(expected, rel=1e-12)
    assert curriculum_probability(250, total, c0) == pytest.approx(0.5, abs=1e-3)
    assert curriculum_probability(0, total, 0.3) == pytest.approx(0.3)


def is_time_frequency(m: Masks) -> bool:
    """A-JEPA settings: 3 stripe targets (time-frequency) vs 4 blocks (multi-block)."""
    return m.target.shape[1] == TIME_FREQUENCY["num_targets"]


def collate_masks(collate: Collate, seed: int, position: int, b: int = 2) -> Masks:
    items = [((torch.zeros(3), 0), seed, position) for _ in range(b)]
    return collate(items).masks


def test_curriculum_masker_is_called_by_collate_with_the_position():
    total = 400
    masker = CurriculumMasker((8, 64), total, c0=0.01, block=BLOCK, time_frequency=TIME_FREQUENCY)
    assert masker.progressive
    collate = Collate(masker)
    for seed, position in [(1, 0), (2, 100), (3, 400)]:
        m = collate_masks(collate, seed, position, b=4)
        direct = masker(4, gen(seed), position)
        assert torch.equal(m.context, direct.context) and torch.equal(m.target, direct.target)
    # at the end of the run every batch is time-frequency masked
    assert all(is_time_frequency(collate_masks(collate, s, total)) for s in range(30))


def test_curriculum_share_of_time_frequency_batches_follows_the_schedule():
    total = 1000
    masker = CurriculumMasker((8, 64), total, c0=0.01, block=BLOCK, time_frequency=TIME_FREQUENCY)
    collate = Collate(masker)
    draws = 400
    quarter = sum(is_time_frequency(collate_masks(collate, s, total // 4)) for s in range(draws))
    assert abs(quarter / draws - curriculum_probability(total // 4, total, 0.01)) < 0.1  # ~0.5
    late = sum(is_time_frequency(collate_masks(collate, s, 640)) for s in range(draws))
    assert abs(late / draws - 0.8) < 0.1


def test_curriculum_starts_with_block_masks():
    grid = (8, 64)
    masker = CurriculumMasker(grid, 1000, c0=0.01, block=BLOCK, time_frequency=TIME_FREQUENCY)
    collate = Collate(masker)
    hard = 0
    for seed in range(150):
        m = collate_masks(collate, seed, 0, b=3)
        if is_time_frequency(m):
            hard += 1
            continue
        check_context(m, math.prod(grid))
        for t in m.target.flatten(0, 1):  # rectangular targets
            idx = set(t.tolist())
            rows, cols = {i // 64 for i in idx}, {i % 64 for i in idx}
            assert idx == {r * 64 + c for r in rows for c in cols}
        # the context lies in one square-ish block of 0.85-1.0 of the area: <= 23 columns wide
        for ctx in m.context:
            cols = (ctx % 64).tolist()
            assert max(cols) - min(cols) + 1 <= 23
    assert hard <= 6  # p = 0.01


# ----------------------------------------------------------------------------- core primitives


def test_stripes_shapes_and_bad_axes():
    rows = masks.stripes(5, (4, 7), 0, 2, 3, gen(0))
    assert rows.shape == (5, 3, 14)
    cols = masks.stripes(5, (4, 7), 1, 3, 2, gen(1))
    assert cols.shape == (5, 2, 12)
    for t in rows.flatten(0, 1):
        assert stripe_kind(t, (4, 7)) == (0, 2)
    for t in cols.flatten(0, 1):
        assert stripe_kind(t, (4, 7)) == (1, 3)
    with pytest.raises(ValueError, match="axis"):
        masks.stripes(2, (4, 7), 2, 1, 1, gen())
    with pytest.raises(ValueError, match="2D grid"):
        masks.stripes(2, (4, 7, 3), 0, 1, 1, gen())
    with pytest.raises(ValueError):  # wider than the grid
        masks.stripes(2, (4, 7), 0, 5, 1, gen())


def test_context_outside():
    target = torch.tensor([[[0, 1, 2]], [[2, 3, 4]]])  # 10 tokens; 7 free in each sample
    m = masks.context_outside(target, 10, gen(0))
    assert m.context.shape == (2, 7) and torch.equal(m.target, target)
    assert m.context[0].tolist() == [3, 4, 5, 6, 7, 8, 9]
    assert m.context[1].tolist() == [0, 1, 5, 6, 7, 8, 9]
    # unequal coverage: subsampled to the fewest free tokens, uniformly among the free ones
    uneven = torch.tensor([[[0, 1, 2, 3]], [[5, 5, 5, 5]]])  # 6 free vs 9 free
    seen = set()
    for seed in range(50):
        m = masks.context_outside(uneven, 10, gen(seed))
        check_context(m, 10)
        assert m.context.shape == (2, 6)
        seen |= set(m.context[1].tolist())
    assert seen == set(range(10)) - {5}
    with pytest.raises(ValueError, match="min_keep"):
        masks.context_outside(torch.arange(10).view(1, 1, 10), 10, gen())
    with pytest.raises(ValueError, match="min_keep=8"):
        masks.context_outside(target, 10, gen(), min_keep=8)
    assert masks.context_outside(target, 10, gen(), min_keep=7).context.shape == (2, 7)


def test_multiblock_on_the_demo_grid_never_gives_up():
    """a_jepa_demo: 128 x 100 log-mel -> (8, 6) patch grid, A-JEPA's blocks, min_keep 4."""
    settings = {**BLOCK, "min_keep": 4}
    g = gen(0)
    smallest = 48
    for _ in range(200):
        m = masks.multiblock(64, (8, 6), settings["target_scale"], settings["target_aspect"],
                             settings["num_targets"], settings["context_scale"], g,
                             settings["min_keep"])
        assert m.target.shape[:2] == (64, 4)
        smallest = min(smallest, m.context.shape[1])
    assert smallest >= 4
    check_context(m, 48)
