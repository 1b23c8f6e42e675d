"""Every registered core masker: shapes, disjoint context/targets, index range, seeding."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import build, single_thread, tiny_recipe  # noqa: F401

from polyjepa.build import build_masker, load_datasets
from polyjepa.registry import get_component, list_components
from polyjepa.types import Masks

# constructor arguments per core masker -> number of tokens they index
CASES: dict[str, list[tuple[dict, int]]] = {
    "random_subsets": [
        ({"num_tokens": 9}, 9),  # the synthetic table's feature count, default ratios
        ({"num_tokens": 2}, 2),  # smallest legal N
        ({"num_tokens": 40, "context_ratio": 0.5, "target_ratio": 0.5, "num_targets": 1}, 40),
        ({"num_tokens": 30, "context_ratio": [0.1363, 0.3682], "target_ratio": [0.1556, 0.6222],
          "num_targets": 4}, 30),  # T-JEPA's ranges, as YAML lists
    ],
    "contiguous_spans": [
        ({"num_tokens": 64}, 64),
        ({"num_tokens": 20, "target_ratio": 0.1, "num_targets": 2}, 20),
    ],
    "multiblock": [
        ({"grid": (14, 14)}, 196),
        ({"grid": [8, 8], "min_keep": 4}, 64),
        ({"grid": (4, 8, 8), "target_scale": (0.1, 0.15), "min_keep": 4}, 256),
    ],
    "future": [
        ({"num_tokens": 15}, 15),  # VJ-VCR: 3 frames predict 12
        ({"num_tokens": 128, "context_steps": 2, "target_steps": 3, "grid": (8, 4, 4)}, 128),
    ],
}

CORE_MASKERS = sorted(name for name, _ in list_components("masker") if "." not in name)
PARAMS = [pytest.param(name, kwargs, n, id=f"{name}-{i}")
          for name in CORE_MASKERS for i, (kwargs, n) in enumerate(CASES.get(name, []))]


def test_every_core_masker_has_test_cases():
    assert {"random_subsets", "contiguous_spans", "multiblock"} <= set(CORE_MASKERS)
    missing = [name for name in CORE_MASKERS if not CASES.get(name)]
    assert not missing, f"add constructor arguments for {missing} to CASES"


def make(name: str, kwargs: dict):
    component = get_component(name, "masker")
    assert component.kind == "masker" and component.origin == "polyjepa"
    return component.factory(**kwargs)


def check(masks: Masks, batch_size: int, num_tokens: int, num_targets: int) -> None:
    ctx, tgt = masks.context, masks.target
    assert ctx.dtype == tgt.dtype == torch.long
    assert ctx.dim() == 2 and tgt.dim() == 3
    assert ctx.shape[0] == tgt.shape[0] == batch_size
    assert tgt.shape[1] == num_targets
    assert ctx.shape[1] >= 1 and tgt.shape[2] >= 1
    for idx in (ctx, tgt):
        assert idx.min() >= 0 and idx.max() < num_tokens
    assert (ctx.diff(dim=1) > 0).all(), "context indices repeat"
    assert (tgt.diff(dim=2) > 0).all(), "a target set repeats an index"
    for b in range(batch_size):
        assert not set(ctx[b].tolist()) & set(tgt[b].flatten().tolist()), f"overlap in sample {b}"


@pytest.mark.parametrize("name,kwargs,num_tokens", PARAMS)
def test_masker_contract(name, kwargs, num_tokens):
    masker = make(name, kwargs)
    num_targets = kwargs.get("num_targets", getattr(masker, "num_targets", 4))
    shapes = set()
    for seed in range(25):
        masks = masker(8, torch.Generator().manual_seed(seed))
        check(masks, 8, num_tokens, num_targets)
        shapes.add((masks.context.shape[1], masks.target.shape[2]))
        if name == "random_subsets":
            assert masks.context.shape[1] + masks.target.shape[2] <= num_tokens
    if getattr(masker, "deterministic", False):
        assert len(shapes) == 1
    elif isinstance(kwargs.get("target_ratio", (0, 1)), tuple | list) and num_tokens >= 20:
        assert len(shapes) > 1, "ratio ranges should give varying counts across batches"


@pytest.mark.parametrize("name,kwargs,num_tokens", PARAMS)
def test_masker_is_seeded(name, kwargs, num_tokens):
    masker = make(name, kwargs)
    a = masker(6, torch.Generator().manual_seed(11))
    b = masker(6, torch.Generator().manual_seed(11))
    assert torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
    # does not touch the global RNG
    state = torch.get_rng_state()
    masker(6, torch.Generator().manual_seed(12))
    assert torch.equal(torch.get_rng_state(), state)
    if num_tokens > 2 and not getattr(masker, "deterministic", False):
        draws = [masker(6, torch.Generator().manual_seed(s)) for s in range(5)]
        assert any(not torch.equal(d.target, draws[0].target) for d in draws[1:])


def test_random_subsets_counts_follow_ratios():
    masker = make("random_subsets", {"num_tokens": 100, "context_ratio": 0.3,
                                     "target_ratio": 0.2, "num_targets": 3})
    masks = masker(4, torch.Generator().manual_seed(0))
    assert masks.context.shape == (4, 30) and masks.target.shape == (4, 3, 20)
    # large ratios are clipped so that context and target fit in N
    masker = make("random_subsets", {"num_tokens": 10, "context_ratio": 0.9, "target_ratio": 0.9})
    masks = masker(4, torch.Generator().manual_seed(0))
    assert masks.context.shape == (4, 9) and masks.target.shape == (4, 4, 1)


def test_multiblock_targets_are_blocks():
    masker = make("multiblock", {"grid": (10, 12), "target_scale": (0.2, 0.2),
                                 "target_aspect": (1.0, 1.0), "num_targets": 2, "min_keep": 1})
    masks = masker(3, torch.Generator().manual_seed(0))
    rows, cols = masks.target // 12, masks.target % 12
    size = masks.target.shape[2]
    h = int(rows[0, 0].max() - rows[0, 0].min()) + 1
    w = int(cols[0, 0].max() - cols[0, 0].min()) + 1
    assert h * w == size and abs(size - 0.2 * 120) <= max(h, w)
    assert math.isclose(h, w, abs_tol=1)


def test_masker_from_recipe_uses_the_table_token_count():
    recipe = build(tiny_recipe())
    meta = load_datasets(recipe)[2]
    masker = build_masker(recipe, meta)
    assert masker.num_tokens == meta["num_tokens"] == 9
    check(masker(5, torch.Generator().manual_seed(0)), 5, 9, 4)
    byol = tiny_recipe(masker=None, objective={"name": "byol"})
    assert build_masker(build(byol), meta) is None
