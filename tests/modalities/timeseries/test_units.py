"""Unit tests of the time-series plugin's pieces: missing values, alignment, scaling, windows,
patch tokens (channel modes, padding, RevIN, actions), padding-aware patch masks, the synthetic
series and `load_data` / `load_file` on `.ts` files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.errors import ConfigError, DataError
from polyjepa.modalities.timeseries import load_data, load_file
from polyjepa.modalities.timeseries.config import TimeSeriesDataConfig
from polyjepa.modalities.timeseries.maskers import MODES, PatchMasker
from polyjepa.modalities.timeseries.preprocess import (
    EPS,
    Scaler,
    align,
    check_channels,
    fill_missing,
    windows,
)
from polyjepa.modalities.timeseries.readers import SeriesSet
from polyjepa.modalities.timeseries.synthetic import CLASS_NAMES, synthetic_series
from polyjepa.modalities.timeseries.tokenizer import PatchTokenizer, RevIN
from polyjepa.posembed import sincos_1d

NAN = np.nan


def series_set(series: list[np.ndarray], labels: list[str] | None = None,
               actions: list[np.ndarray] | None = None, prefix: str = "s") -> SeriesSet:
    return SeriesSet(series=series, labels=labels, actions=actions,
                     channel_names=[str(c) for c in range(series[0].shape[0])],
                     action_names=[] if actions is None else [str(a) for a in range(actions[0].shape[0])],
                     names=[f"{prefix}{i}" for i in range(len(series))], class_names=None,
                     source="memory")


def valid(lengths: np.ndarray, steps: int) -> np.ndarray:
    """`[N, 1, T]` True on each series' own steps."""
    return (np.arange(steps)[None] < np.asarray(lengths)[:, None])[:, None]


# ---------------------------------------------------------------------------------------------
# Missing values


def test_fill_missing_interpolates_interior_and_holds_the_ends():
    series = np.array([[NAN, 1, NAN, NAN, 7, NAN, NAN],
                       [0, 1, 2, 3, 4, 5, 6],
                       [2, NAN, 4, 4, NAN, NAN, 10]], dtype=np.float32)
    before = series.copy()
    out = fill_missing(series, "x.ts line 3")
    np.testing.assert_array_equal(out, np.array([[1, 1, 3, 5, 7, 7, 7],
                                                 [0, 1, 2, 3, 4, 5, 6],
                                                 [2, 3, 4, 4, 6, 8, 10]], dtype=np.float32))
    np.testing.assert_array_equal(np.isnan(series), np.isnan(before))  # the input is not edited


def test_fill_missing_all_nan_channel_names_series_and_channel():
    series = np.array([[1, 2, 3], [NAN, 1, NAN], [NAN, NAN, NAN]], dtype=np.float32)
    with pytest.raises(DataError, match=r"my_data\.ts line 17: channel 2 "):
        fill_missing(series, "my_data.ts line 17")


# ---------------------------------------------------------------------------------------------
# Alignment


def test_align_pad_keeps_values_then_zeros_and_cuts_longer_series():
    series = [np.arange(1, 1 + 2 * t, dtype=np.float32).reshape(2, t) for t in (3, 5, 7)]
    out, lengths = align(series, 5, "pad")
    assert out.shape == (3, 2, 5) and out.dtype == np.float32
    assert lengths.tolist() == [3, 5, 5]
    for i, (s, t) in enumerate(zip(series, lengths, strict=True)):
        np.testing.assert_array_equal(out[i, :, :t], s[:, :t])
        assert (out[i, :, t:] == 0).all()


def test_align_resample_preserves_ends_and_resamples_a_ramp_exactly():
    ramp = np.stack([np.arange(7), 2 * np.arange(7) + 3]).astype(np.float32)  # [2, 7]
    short = np.array([[5, -1, 2, 9], [0, 0, 0, 1]], dtype=np.float32)
    single = np.array([[4], [-2]], dtype=np.float32)
    out, lengths = align([ramp, short, single], 13, "resample")
    assert out.shape == (3, 2, 13) and lengths.tolist() == [13, 13, 13]
    grid = np.linspace(0, 6, 13)
    np.testing.assert_allclose(out[0], np.stack([grid, 2 * grid + 3]), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(out[1, :, 0], short[:, 0])
    np.testing.assert_array_equal(out[1, :, -1], short[:, -1])
    np.testing.assert_array_equal(out[2], np.repeat(single, 13, axis=1))


def test_align_rejects_an_unknown_length_policy():
    with pytest.raises(ConfigError, match="length_policy.*crop"):
        align([np.zeros((1, 3), np.float32)], 3, "crop")


# ---------------------------------------------------------------------------------------------
# Standardisation


def test_per_dataset_statistics_ignore_padding():
    series = [np.array([[10, 10, 10, 10], [1, 2, 3, 4]], dtype=np.float32),
              np.array([[20, 20], [-4, 8]], dtype=np.float32)]
    values, lengths = align(series, 4, "pad")
    scaler = Scaler.fit("per_dataset", values, lengths)
    observed = np.concatenate(series, axis=1)  # the 6 valid steps per channel
    np.testing.assert_allclose(scaler.mean, observed.mean(1), rtol=1e-6)
    np.testing.assert_allclose(scaler.std, observed.std(1), rtol=1e-6)
    assert abs(scaler.mean[0] - values[:, 0].mean()) > 3  # padding would have pulled it to 10
    out = scaler(values, lengths)
    scaled = np.concatenate([out[0], out[1, :, :2]], axis=1)
    np.testing.assert_allclose(scaled.mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.std(1), 1, atol=1e-5)
    assert (out[1, :, 2:] == 0).all()


def test_per_dataset_scaler_applies_training_statistics_to_another_set():
    rng = np.random.default_rng(0)
    train = [rng.normal(2, 3, (2, t)).astype(np.float32) for t in (9, 12, 7)]
    other = [s + np.float32(5) for s in train[:2]]
    values, lengths = align(train, 12, "pad")
    scaler = Scaler.fit("per_dataset", values, lengths)
    other_values, other_lengths = align(other, 12, "pad")
    out = scaler(other_values, other_lengths)
    expected = (other_values - scaler.mean[None, :, None]) / (scaler.std[None, :, None] + EPS)
    mask = valid(other_lengths, 12)
    np.testing.assert_allclose(np.where(mask, out, 0), np.where(mask, expected, 0), rtol=1e-5, atol=1e-5)
    shifted = out[:, 0][mask[:, 0]].mean()
    assert shifted > 1  # ~ 5 / std: not re-centred on its own mean


def test_per_series_gives_each_channel_zero_mean_unit_std_over_its_valid_steps():
    rng = np.random.default_rng(1)
    series = [rng.normal(loc, scale, (3, t)).astype(np.float32)
              for loc, scale, t in ((5, 2, 20), (-3, 0.5, 11), (100, 10, 6))]
    values, lengths = align(series, 20, "pad")
    scaler = Scaler.fit("per_series", values, lengths)
    assert scaler.mean is None and scaler.std is None
    out = scaler(values, lengths)
    for i, t in enumerate(lengths):
        np.testing.assert_allclose(out[i, :, :t].mean(1), 0, atol=1e-5)
        np.testing.assert_allclose(out[i, :, :t].std(1), 1, atol=1e-4)
        assert (out[i, :, t:] == 0).all()


@pytest.mark.parametrize("mode", ["per_dataset", "per_series", "none"])
def test_padding_stays_exactly_zero_after_scaling(mode):
    rng = np.random.default_rng(2)
    series = [rng.normal(7, 2, (2, t)).astype(np.float32) for t in (10, 4, 1, 7)]
    values, lengths = align(series, 10, "pad")
    out = Scaler.fit(mode, values, lengths)(values, lengths)
    pad = ~np.broadcast_to(valid(lengths, 10), out.shape)
    assert pad.sum() > 0 and (out[pad] == 0).all()
    if mode != "none":  # the valid steps were moved, so padding would have been too if unmasked
        assert abs(out[~pad].mean()) < 1


def test_scaler_rejects_an_unknown_mode():
    with pytest.raises(ConfigError, match="standardize"):
        Scaler.fit("minmax", np.zeros((1, 1, 2), np.float32), np.array([2]))


# ---------------------------------------------------------------------------------------------
# Windows and channel checks


def test_windows_count_carry_labels_and_actions_and_name_the_slice():
    long = np.arange(20, dtype=np.float32).reshape(2, 10)
    short = np.arange(3, dtype=np.float32).reshape(1, 3).repeat(2, 0)
    acts = [np.arange(10, dtype=np.float32)[None] + 100, np.arange(3, dtype=np.float32)[None] + 200]
    data = series_set([long, short], labels=["a", "b"], actions=acts)
    out = windows(data, 4, 2)
    assert len(out.series) == 4 + 1  # (10 - 4) // 2 + 1 windows, the short series stays whole
    assert out.labels == ["a"] * 4 + ["b"]
    assert out.names == ["s0 [0:4]", "s0 [2:6]", "s0 [4:8]", "s0 [6:10]", "s1 [0:3]"]
    for k, start in enumerate((0, 2, 4, 6)):
        np.testing.assert_array_equal(out.series[k], long[:, start:start + 4])
        np.testing.assert_array_equal(out.actions[k], acts[0][:, start:start + 4])
    np.testing.assert_array_equal(out.series[4], short)
    np.testing.assert_array_equal(out.actions[4], acts[1])
    default = windows(series_set([long]), 4, None)  # stride = window
    assert len(default.series) == 2 and default.labels is None and default.actions is None
    assert default.names == ["s0 [0:4]", "s0 [4:8]"]
    with pytest.raises(ConfigError, match="window"):
        windows(data, 0, None)


def test_windows_rejects_a_zero_stride():
    with pytest.raises(ConfigError, match="window"):
        windows(series_set([np.zeros((1, 10), np.float32)]), 4, 0)


def test_check_channels_names_both_series():
    first = series_set([np.zeros((2, 5), np.float32)] * 2, prefix="train ")
    other = series_set([np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32)], prefix="test ")
    check_channels([first, series_set([np.ones((2, 9), np.float32)])])  # same C, other T: fine
    with pytest.raises(DataError, match=r"test 1: 3 channels.*train 0 has 2"):
        check_channels([first, other])


# ---------------------------------------------------------------------------------------------
# Patch tokens


def make_tokenizer(seed: int = 0, **kwargs) -> PatchTokenizer:
    torch.manual_seed(seed)
    return PatchTokenizer(**{"dim": 16, **kwargs}).eval()


def batch(b: int, c: int, t: int, lengths: list[int] | None = None, seed: int = 0) -> dict:
    values = torch.randn(b, c, t, generator=torch.Generator().manual_seed(seed))
    length = torch.tensor(lengths if lengths is not None else [t] * b)
    return {"values": values * (torch.arange(t)[None, None] < length[:, None, None]), "length": length}


def test_layout_and_shapes_in_both_channel_modes():
    x = batch(2, 3, 18)
    ind = make_tokenizer(channels=3, length=18, patch=4)
    out = ind(x)
    assert ind.layout == {"num_tokens": 15, "grid": (5, 3), "patch": 4, "stride": 4, "action_dim": 0}
    assert out.x.shape == (2, 15, 16) and out.pos.shape == (15, 16) and out.pad_mask is None
    torch.testing.assert_close(out.pos, sincos_1d(5, 16).repeat_interleave(3, dim=0))
    mix = make_tokenizer(channels=3, length=18, patch=4, stride=2, channel_mode="mixing")
    assert mix.layout == {"num_tokens": 8, "grid": (8, 1), "patch": 4, "stride": 2, "action_dim": 0}
    assert mix(x).x.shape == (2, 8, 16) and mix.value.in_features == 12
    with pytest.raises(ValueError, match="channel_mode"):
        PatchTokenizer(channels=3, length=18, patch=4, channel_mode="shared")


@pytest.mark.parametrize("mode", ["independent", "mixing"])
def test_perturbing_one_channel_of_one_patch_moves_only_its_token(mode):
    c, p, n = 3, 4, 5
    tok = make_tokenizer(channels=c, length=n * p, patch=p, channel_mode=mode)
    x = batch(2, c, n * p)
    base = tok(x).x
    for patch, channel in ((0, 0), (2, 1), (4, 2), (3, 0)):
        changed = {**x, "values": x["values"].clone()}
        changed["values"][:, channel, patch * p:(patch + 1) * p] += torch.tensor([1.0, -2.0, 0.5, 3.0])
        moved = (tok(changed).x - base).abs().sum(-1)  # [B, tokens]
        expected = patch * c + channel if mode == "independent" else patch
        assert moved.nonzero()[:, 1].unique().tolist() == [expected]
        assert (moved[:, expected] > 0).all()


@pytest.mark.parametrize(("length", "num", "patch"), [(64, 10, 7), (10, 4, 3), (96, 10, 10), (7, 7, 1)])
def test_num_patches_sets_the_patch_and_drops_no_step(length, num, patch):
    tok = make_tokenizer(channels=2, length=length, patch=None, num_patches=num)
    assert tok.layout["patch"] == patch == -(-length // num) and tok.layout["stride"] == patch
    assert tok.layout["grid"] == (num, 2)
    x = batch(1, 2, length)
    base = tok(x).x
    assert base.shape == (1, num * 2, 16)
    changed = {**x, "values": x["values"].clone()}
    changed["values"][:, 1, -1] += 5.0  # the series' very last step
    moved = (tok(changed).x - base).abs().sum(-1)[0]
    assert moved.nonzero()[:, 0].tolist() == [num * 2 - 1]  # last patch, channel 1
    with pytest.raises(ValueError, match="num_patches"):
        PatchTokenizer(channels=2, length=length, patch=None, num_patches=length + 1)


@pytest.mark.parametrize(("length", "num", "patches"), [(81, 10, 9), (10, 6, 5), (100, 10, 10)])
def test_num_patches_gives_the_fewest_equal_patches_that_cover_the_series(length, num, patches):
    """P = ceil(T / n); when n - 1 such patches already cover T (T=81, n=10: 9 of 9 steps), the
    n-th would be all padding and is not made."""
    tok = make_tokenizer(channels=1, length=length, patch=None, num_patches=num)
    assert tok.layout["grid"][0] == patches <= num
    assert tok.patch * patches >= length > tok.patch * (patches - 1)


@pytest.mark.parametrize(("patch", "stride"), [(4, 4), (4, 2), (3, 5)])
def test_pad_mask_marks_patches_starting_at_or_after_the_length(patch, stride):
    lengths = [20, 9, 4, 13, 1]
    tok = make_tokenizer(channels=2, length=20, patch=patch, stride=stride)
    pad = tok(batch(5, 2, 20, lengths)).pad_mask
    n = tok.layout["grid"][0]
    assert pad.shape == (5, n * 2)
    for b, length in enumerate(lengths):
        expected = [k * stride >= length for k in range(n) for _ in range(2)]
        assert pad[b].tolist() == expected
    assert pad[1].any() and not pad[1, :2].any()
    mixing = make_tokenizer(channels=2, length=20, patch=4, channel_mode="mixing")
    assert mixing(batch(5, 2, 20, lengths)).pad_mask[1].tolist() == [False] * 3 + [True] * 2
    assert make_tokenizer(channels=2, length=20, patch=4)(batch(3, 2, 20, [20, 17, 19])).pad_mask is None


def test_a_series_shorter_than_one_patch_is_an_error():
    with pytest.raises(ValueError, match="one patch of 8"):
        PatchTokenizer(channels=1, length=5, patch=8)


def test_shorter_inputs_take_the_first_positions_and_longer_ones_fail():
    tok = make_tokenizer(channels=2, length=8, patch=1)
    x = batch(3, 2, 8)
    full = tok(x)
    one = tok({"values": x["values"][..., :1], "length": torch.ones(3, dtype=torch.long)})
    assert one.x.shape == (3, 2, 16)
    torch.testing.assert_close(one.pos, tok.pos[:2])
    torch.testing.assert_close(one.x, full.x[:, :2])
    wide = make_tokenizer(channels=2, length=20, patch=4)
    part = wide({"values": x["values"][..., :6], "length": torch.full((3,), 6)})  # 2 patches
    assert part.x.shape == (3, 4, 16) and torch.equal(part.pos, wide.pos[:4])
    with pytest.raises(ValueError, match="longer"):
        tok({"values": torch.zeros(3, 2, 9), "length": torch.full((3,), 9)})


def test_positions_false_gives_zero_positions():
    off = make_tokenizer(channels=2, length=12, patch=3, positions=False)
    on = make_tokenizer(channels=2, length=12, patch=3)
    x = batch(2, 2, 12)
    assert off(x).pos.shape == (8, 16) and (off(x).pos == 0).all()
    assert (on(x).pos.abs().sum(-1) > 0)[2:].all()
    torch.testing.assert_close(off(x).x, on(x).x)  # positions are not baked into the tokens


def test_revin_tokens_are_invariant_to_per_series_scale_and_shift():
    lengths = [16, 11, 6]
    x = batch(3, 2, 16, lengths, seed=3)
    g = torch.Generator().manual_seed(4)
    a = torch.rand(3, 2, 1, generator=g) * 4 + 0.5
    b = torch.randn(3, 2, 1, generator=g) * 10
    moved = {**x, "values": a * x["values"] + b}  # the padding too: RevIN must ignore it
    for mode in ("independent", "mixing"):
        tok = make_tokenizer(channels=2, length=16, patch=4, channel_mode=mode, revin=True)
        base, other = tok(x), tok(moved)
        torch.testing.assert_close(other.x, base.x, rtol=1e-4, atol=1e-4)
        assert torch.equal(other.pad_mask, base.pad_mask)
    plain = make_tokenizer(channels=2, length=16, patch=4)
    assert not torch.allclose(plain(moved).x, plain(x).x, atol=1e-2)


@pytest.mark.parametrize("affine", [False, True])
def test_revin_inverse_restores_the_originals_on_valid_steps(affine):
    lengths = torch.tensor([12, 7, 3])
    values = torch.randn(3, 2, 12, generator=torch.Generator().manual_seed(5)) * 6 + 20
    revin = RevIN(2, affine=affine)
    if affine:
        with torch.no_grad():
            revin.weight.copy_(torch.tensor([2.0, 0.5]))
            revin.bias.copy_(torch.tensor([-1.0, 3.0]))
    norm, stats = revin(values, lengths)
    restored = revin.inverse(norm, stats)
    for i, t in enumerate(lengths.tolist()):
        torch.testing.assert_close(restored[i, :, :t], values[i, :, :t], rtol=1e-5, atol=1e-4)
        assert (norm[i, :, t:] == 0).all()
        if not affine:
            torch.testing.assert_close(norm[i, :, :t].mean(-1), torch.zeros(2), atol=1e-5, rtol=0)
            torch.testing.assert_close(norm[i, :, :t].std(-1, unbiased=False), torch.ones(2),
                                       atol=1e-3, rtol=0)


def test_step_actions_are_the_actions_leading_into_each_patch():
    p, t, b, a = 4, 12, 2, 2
    tok = make_tokenizer(channels=1, length=t, patch=p, num_actions=a)
    assert tok.layout["action_dim"] == a * p
    actions = (torch.arange(t)[None, None] + 1 + 100 * torch.arange(a)[None, :, None]
               + 1000 * torch.arange(b)[:, None, None]).float()  # [B, A, T], never 0
    x = {**batch(b, 1, t), "actions": actions}
    out = tok.step_actions(x)
    assert out.shape == (b, t // p, a * p)

    def act(sample: int, channel: int, step: int) -> float:
        return 0.0 if step < 0 else float(actions[sample, channel, step])

    for s in range(b):
        for patch in range(t // p):
            expected = [act(s, ch, k) for ch in range(a) for k in range(patch * p - 1, patch * p + p - 1)]
            assert out[s, patch].tolist() == expected
    assert tok.step_actions(batch(b, 1, t)) is None


# ---------------------------------------------------------------------------------------------
# Patch masks


def check_masks(masks, valid_patches: list[int], per_step: int, mode: str, ratio: float) -> None:
    """Shared properties of every mode; returns nothing, asserts everything."""
    shortest = min(valid_patches)
    num_target = round(ratio * shortest)
    b = len(valid_patches)
    assert masks.context.shape == (b, (shortest - num_target) * per_step)
    assert masks.target.shape == (b, 1, num_target * per_step)
    for s in range(b):
        ctx, tgt = masks.context[s], masks.target[s, 0]
        assert not set(ctx.tolist()) & set(tgt.tolist())
        for tokens in (ctx, tgt):
            assert (tokens < valid_patches[s] * per_step).all() and (tokens >= 0).all()
            grouped = tokens.view(-1, per_step)  # every patch's C' tokens together, in order
            patches = grouped[:, 0] // per_step
            assert torch.equal(grouped, patches[:, None] * per_step + torch.arange(per_step))
            assert len(set(patches.tolist())) == len(patches)


@pytest.mark.parametrize("mode", MODES)
def test_patch_masks_are_disjoint_valid_and_sized_by_the_shortest_series(mode):
    stride, per_step, ratio = 4, 3, 0.4
    length = torch.tensor([40, 23, 17, 33])  # 10, 6, 5 and 9 valid patches
    masker = PatchMasker((10, per_step), stride, mode=mode, mask_ratio=ratio)
    assert masker.valid_patches(length).tolist() == [10, 6, 5, 9]
    for seed in range(30):
        masks = masker({"values": torch.zeros(4, 3, 40), "length": length},
                       torch.Generator().manual_seed(seed))
        check_masks(masks, [10, 6, 5, 9], per_step, mode, ratio)
        assert masks.target.shape[-1] == 2 * per_step and masks.context.shape[-1] == 3 * per_step


def test_masks_never_select_padding_tokens_of_the_tokenizer():
    tok = make_tokenizer(channels=2, length=30, patch=3)
    x = batch(4, 2, 30, [30, 10, 7, 22])
    pad = tok(x).pad_mask
    for mode in MODES:
        masker = PatchMasker(tok.layout["grid"], tok.layout["stride"], mode=mode, mask_ratio=0.5)
        for seed in range(10):
            m = masker(x, torch.Generator().manual_seed(seed))
            assert not pad.gather(1, m.context).any() and not pad.gather(1, m.target[:, 0]).any()


def patches_of(tokens: torch.Tensor, per_step: int) -> list[list[int]]:
    return (tokens.view(tokens.shape[0], -1, per_step)[..., 0] // per_step).tolist()


def test_span_targets_are_consecutive_and_start_anywhere_valid():
    length = torch.tensor([24, 12, 40])  # stride 2: 12, 6 and 20 valid patches
    masker = PatchMasker((20, 2), 2, mode="span", mask_ratio=0.5)
    starts = [set() for _ in range(3)]
    for seed in range(200):
        m = masker({"values": torch.zeros(3, 2, 40), "length": length}, torch.Generator().manual_seed(seed))
        for s, target in enumerate(patches_of(m.target[:, 0], 2)):
            assert target == list(range(target[0], target[0] + 3))
            starts[s].add(target[0])
    assert starts == [set(range(12 - 3 + 1)), set(range(6 - 3 + 1)), set(range(20 - 3 + 1))]


def test_future_context_is_the_first_patches_and_precedes_the_target():
    length = torch.tensor([50, 35, 48])  # stride 5: 10, 7, 10 valid patches
    masker = PatchMasker((10, 1), 5, mode="future", mask_ratio=0.3)
    m = masker({"values": torch.zeros(3, 1, 50), "length": length}, torch.Generator().manual_seed(0))
    k = round(0.3 * 7)
    for s in range(3):
        assert m.context[s].tolist() == list(range(7 - k))
        assert m.target[s, 0].tolist() == list(range(7 - k, 7))
        assert max(m.context[s]) < min(m.target[s, 0])


def test_random_masks_cover_every_patch_when_lengths_are_equal_and_reach_long_tails():
    masker = PatchMasker((8, 3), 4, mode="random", mask_ratio=0.75)
    equal = {"values": torch.zeros(5, 1, 32), "length": torch.full((5,), 32)}
    for seed in range(10):
        m = masker(equal, torch.Generator().manual_seed(seed))
        both = torch.cat([m.context, m.target[:, 0]], dim=1).sort(dim=1).values
        assert torch.equal(both, torch.arange(24).expand(5, -1))
    mixed = {"values": torch.zeros(2, 1, 32), "length": torch.tensor([32, 12])}  # 8 and 3 patches
    reached = set()
    for seed in range(50):
        m = masker(mixed, torch.Generator().manual_seed(seed))
        reached |= set(patches_of(m.target[:1, 0], 3)[0]) | set(patches_of(m.context[:1], 3)[0])
    assert reached == set(range(8))  # the long sample's patches beyond the shortest's 3 are used


@pytest.mark.parametrize("mode", ["random", "span"])
def test_masks_are_reproducible_per_seed_and_differ_across_seeds(mode):
    masker = PatchMasker((12, 2), 1, mode=mode, mask_ratio=0.5)
    x = {"values": torch.zeros(6, 2, 12), "length": torch.tensor([12, 10, 12, 11, 12, 9])}
    a = masker(x, torch.Generator().manual_seed(7))
    b = masker(x, torch.Generator().manual_seed(7))
    c = masker(x, torch.Generator().manual_seed(8))
    assert torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
    assert not (torch.equal(a.context, c.context) and torch.equal(a.target, c.target))


def test_masker_errors():
    with pytest.raises(ValueError, match="mode 'blocks'"):
        PatchMasker((10, 1), 4, mode="blocks")
    for ratio in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="mask_ratio"):
            PatchMasker((10, 1), 4, mask_ratio=ratio)
    with pytest.raises(ValueError, match="at least 2 patches"):
        PatchMasker((1, 3), 4)
    masker = PatchMasker((10, 1), 4)
    with pytest.raises(ValueError, match="covers 1 patch"):
        masker({"values": torch.zeros(2, 1, 40), "length": torch.tensor([40, 3])}, torch.Generator())


# ---------------------------------------------------------------------------------------------
# Synthetic series


def test_synthetic_series_are_seeded_bounded_and_balanced():
    series, labels = synthetic_series(40, length=30, min_length=20, seed=3)
    again, labels_again = synthetic_series(40, length=30, min_length=20, seed=3)
    other, _ = synthetic_series(40, length=30, min_length=20, seed=4)
    assert np.array_equal(labels, labels_again)
    assert all(np.array_equal(s, t) for s, t in zip(series, again, strict=True))
    assert not all(s.shape == t.shape and np.array_equal(s, t) for s, t in zip(series, other, strict=True))
    lengths = [s.shape[1] for s in series]
    assert all(s.shape[0] == 2 and s.dtype == np.float32 for s in series)
    assert min(lengths) >= 20 and max(lengths) <= 30 and len(set(lengths)) > 3
    assert np.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10] and len(CLASS_NAMES) == 4


# ---------------------------------------------------------------------------------------------
# load_data / load_file on .ts files

TRAIN_TS = """# training cases
@problemName X
@dimensions 2
@equalLength false
@classLabel true b a c
@data
1,2,3,4:5,6,7,8:a
1,2:3,4:b
2,3,4:4,5,6:a
"""
TEST_TS = """@problemName X
@dimensions 2
@equalLength false
@classLabel true b a c
@data
9,8,7,6,5:1,2,3,4,5:b
4,4:2,2:a
"""


def write_pair(directory: Path, test_text: str = TEST_TS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "X_TEST.ts").write_text(test_text)
    train = directory / "X_TRAIN.ts"
    train.write_text(TRAIN_TS)
    return train


def test_load_data_finds_the_test_twin_pads_and_indexes_training_classes(tmp_path):
    path = write_pair(tmp_path)
    train, test, meta = load_data(TimeSeriesDataConfig(path=str(path), standardize="none"), None)
    assert meta["class_names"] == ["b", "a"] and meta["num_classes"] == 2  # declared order, c unseen
    assert meta["channels"] == 2 and meta["length"] == 4
    assert train.labels.tolist() == [1, 0, 1] and test.labels.tolist() == [0, 1]
    assert train.lengths.tolist() == [4, 2, 3] and test.lengths.tolist() == [4, 2]  # test cut at 4
    assert train.values.shape == (3, 2, 4) and test.values.shape == (2, 2, 4)
    assert train.values[1].tolist() == [[1, 2, 0, 0], [3, 4, 0, 0]]
    assert train.values[2].tolist() == [[2, 3, 4, 0], [4, 5, 6, 0]]
    assert test.values[0].tolist() == [[9, 8, 7, 6], [1, 2, 3, 4]]
    x, y = test[1]
    assert x["values"].tolist() == [[4, 4, 0, 0], [2, 2, 0, 0]] and int(x["length"]) == 2 and int(y) == 1


def test_load_data_length_cuts_every_series(tmp_path):
    path = write_pair(tmp_path)
    train, test, meta = load_data(TimeSeriesDataConfig(path=str(path), length=3, standardize="none"), None)
    assert meta["length"] == 3 and train.values.shape == (3, 2, 3)
    assert train.lengths.tolist() == [3, 2, 3] and test.lengths.tolist() == [3, 2]
    assert train.values[0].tolist() == [[1, 2, 3], [5, 6, 7]]


def test_load_data_rejects_a_test_label_unseen_in_training(tmp_path):
    path = write_pair(tmp_path, TEST_TS + "1,1:1,1:c\n")
    with pytest.raises(DataError, match=re.escape("['c'] never occur in training") + ".*X_TEST.ts line 8"):
        load_data(TimeSeriesDataConfig(path=str(path)), None)


def test_load_file_scales_with_training_statistics_and_appends_new_labels(tmp_path):
    path = write_pair(tmp_path)
    _, _, meta = load_data(TimeSeriesDataConfig(path=str(path)), None)
    mean, std = np.asarray(meta["scaler"]["mean"]), np.asarray(meta["scaler"]["std"])
    observed = np.array([[1, 2, 3, 4, 1, 2, 2, 3, 4], [5, 6, 7, 8, 3, 4, 4, 5, 6]], dtype=np.float32)
    np.testing.assert_allclose(mean, observed.mean(1), rtol=1e-6)
    np.testing.assert_allclose(std, observed.std(1), rtol=1e-6)
    third = tmp_path / "Y.ts"
    third.write_text("@dimensions 2\n@classLabel true a z\n@data\n3,1,2:4,4,4:z\n1,2,3,4,5:6,7,8,9,9:a\n")
    arrays = load_file(TimeSeriesDataConfig(path=str(path)), str(third), None, meta)
    assert arrays.labels.tolist() == [2, 1]  # z appended after the training classes b, a
    assert arrays.lengths.tolist() == [3, 4]
    raw = np.array([[3, 1, 2], [4, 4, 4]], dtype=np.float32)
    np.testing.assert_allclose(arrays.values[0, :, :3].numpy(), (raw - mean[:, None]) / (std[:, None] + EPS),
                               rtol=1e-5)
    assert (arrays.values[0, :, 3:] == 0).all()


def write_narrow_and_wide(directory: Path) -> dict[int, Path]:
    files = {1: "@classLabel true a\n@data\n1,2,3:a\n",
             3: "@dimensions 3\n@classLabel true a\n@data\n1,2,3:1,2,3:1,2,3:a\n"}
    for c, text in files.items():
        (directory / f"C{c}.ts").write_text(text)
    return {c: directory / f"C{c}.ts" for c in files}


@pytest.mark.parametrize("mode", ["per_series", "none"])
def test_load_file_rejects_another_channel_count(tmp_path, mode):
    cfg = TimeSeriesDataConfig(path=str(write_pair(tmp_path)), standardize=mode)
    _, _, meta = load_data(cfg, None)
    for c, path in write_narrow_and_wide(tmp_path).items():
        with pytest.raises(DataError, match=f"{c} channels, the run was trained on 2"):
            load_file(cfg, str(path), None, meta)


@pytest.mark.parametrize("channels", [1, 3])
def test_load_file_rejects_another_channel_count_with_per_dataset_scaling(tmp_path, channels):
    cfg = TimeSeriesDataConfig(path=str(write_pair(tmp_path)))  # standardize="per_dataset"
    _, _, meta = load_data(cfg, None)
    path = write_narrow_and_wide(tmp_path)[channels]
    with pytest.raises(DataError, match=f"{channels} channels, the run was trained on 2"):
        load_file(cfg, str(path), None, meta)


def test_a_file_without_a_test_twin_is_split_seeded_and_stratified(tmp_path):
    rows = ["label," + ",".join(f"t{k}" for k in range(8))]
    for i in range(40):
        rows.append(("a" if i < 30 else "b") + "," + ",".join(str(i + k) for k in range(8)))
    (tmp_path / "wide.csv").write_text("\n".join(rows) + "\n")
    cfg = TimeSeriesDataConfig(path=str(tmp_path / "wide.csv"), test_fraction=0.25)
    train, test, meta = load_data(cfg, None)
    assert (len(train), len(test)) == (30, 10) and meta["class_names"] == ["a", "b"]
    assert int((test.labels == 1).sum()) in (2, 3)  # b is a quarter of the series
    again, _, _ = load_data(cfg, None)
    assert torch.equal(again.values, train.values)  # seeded by data.split_seed
