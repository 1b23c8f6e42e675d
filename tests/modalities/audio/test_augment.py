"""BYOL-A's batched augmentations (Mixup with memory, Random Resize Crop, Linear Fader, batch
post-normalisation) against the official per-example algorithms, and BYOL-A end to end."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.build import (
    build_augmentations,
    build_objective,
    load_datasets,
    recipe_from_dict,
    split_augmentations,
)
from polyjepa.data import Collate
from polyjepa.modalities.audio.augment import (
    EPS,
    BatchNormalize,
    MixupMemory,
    RandomLinearFader,
    RandomResizeCrop,
    log_mixup_exp,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def lms(b: int, f: int = 8, t: int = 10, seed: int = 0) -> torch.Tensor:
    """A random log-mel-like batch `[b, 1, f, t]` (standardised values)."""
    return torch.randn(b, 1, f, t, generator=gen(seed))


# ----------------------------------------------------------------------------- log_mixup_exp


def test_log_mixup_exp_lambda_zero_and_self_mix_are_identities():
    x, z = lms(4, seed=1), lms(4, seed=2)
    torch.testing.assert_close(log_mixup_exp(x, z, torch.zeros(4)), x, atol=1e-5, rtol=0)
    lam = torch.tensor([0.0, 0.1, 0.3, 0.4])
    torch.testing.assert_close(log_mixup_exp(x, x, lam), x, atol=1e-5, rtol=0)


def test_log_mixup_exp_is_the_power_domain_mix():
    x, z = lms(6, seed=3), 2 * lms(6, seed=4)
    lam = torch.linspace(0, 1, 6)
    out = log_mixup_exp(x, z, lam)
    xd, zd, ld = x.double(), z.double(), lam.double().view(-1, 1, 1, 1)
    expected = torch.log((1 - ld) * xd.exp() + ld * zd.exp() + EPS)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    # log-sum-exp: between the inputs elementwise, and above the log-domain (linear) mix (Jensen)
    tol = 1e-4
    assert (out >= torch.minimum(x, z) - tol).all() and (out <= torch.maximum(x, z) + tol).all()
    linear = (1 - ld) * xd + ld * zd
    assert (out.double() >= linear - tol).all()
    assert (out.double() - linear).max() > 0.1  # really not a log-domain mix


# ----------------------------------------------------------------------------- MixupMemory


def numbered(first: int, count: int, f: int = 2, t: int = 3) -> torch.Tensor:
    """Entries `first .. first + count - 1`, entry k filled with the value k."""
    return torch.arange(first, first + count, dtype=torch.float32).view(-1, 1, 1, 1).expand(
        count, 1, f, t).clone()


def entry_ids(memory: torch.Tensor) -> list[int]:
    """Ids of the entries of a (linear-domain) memory filled by `numbered`."""
    return [int(v) for v in memory.log().mean(dim=(1, 2, 3)).round().tolist()]


def test_mixup_empty_memory_passes_through_and_stores_the_batch():
    m = MixupMemory(8, 10, ratio=0.4, memory_size=16)
    x = lms(4, seed=5)
    out = m(x, gen(0))
    assert torch.equal(out, x)
    assert int(m.filled) == 4 and int(m.head) == 4
    torch.testing.assert_close(m.memory[:4], x.exp())  # stored in the linear domain
    assert torch.equal(m.memory[4:], torch.zeros(12, 1, 8, 10))
    # the next batch is mixed, and what is stored is its unmixed input
    x2 = lms(4, seed=6)
    out2 = m(x2, gen(1))
    assert not torch.allclose(out2, x2)
    torch.testing.assert_close(m.memory[4:8], x2.exp())
    assert int(m.filled) == 8


def test_mixup_matches_hand_computation_from_the_same_generator():
    ratio, size = 0.4, 6
    m = MixupMemory(8, 10, ratio=ratio, memory_size=size)
    m(lms(4, seed=7), gen(0))  # memory: 4 entries
    m(lms(3, seed=8), gen(1))  # 6 entries after a wrap-around push (full)
    memory, filled = m.memory.clone(), int(m.filled)
    x = lms(5, seed=9)
    out = m(x, gen(42))
    g = gen(42)  # the draws in the module's order: lambda per example, then the memory entry
    lam = ratio * torch.rand(5, generator=g)
    choice = torch.randint(0, filled, (5,), generator=g)
    z = memory[choice].double().log()  # the memory holds linear-domain entries
    ld = lam.double().view(-1, 1, 1, 1)
    expected = torch.log((1 - ld) * x.double().exp() + ld * z.exp() + EPS)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_mixup_lambda_lies_in_zero_ratio():
    """Recover λ from outputs: x = 0 mixed with a memory of constant c gives
    `y = log(1 - λ + λ e^c)`, so `λ = (e^y - 1) / (e^c - 1)`."""
    ratio, c, b = 0.3, 3.0, 512
    m = MixupMemory(2, 3, ratio=ratio, memory_size=8)
    m(torch.full((8, 1, 2, 3), c), gen(0))
    y = m(torch.zeros(b, 1, 2, 3), gen(1)).double()
    assert torch.allclose(y, y[:, :, :1, :1].expand_as(y))  # one λ per example
    lam = (y[:, 0, 0, 0].exp() - 1 - EPS) / (torch.exp(torch.tensor(c, dtype=torch.float64)) - 1)
    assert (lam >= -1e-6).all() and (lam < ratio).all()
    assert lam.max() > 0.95 * ratio and lam.min() < 0.05 * ratio  # spans [0, ratio)
    assert len(set(lam.round(decimals=5).tolist())) > b // 2  # per example, not per batch


def test_mixup_ratio_zero_is_identity():
    m = MixupMemory(8, 10, ratio=0.0, memory_size=4)
    m(lms(4, seed=1), gen(0))
    x = lms(3, seed=2)
    torch.testing.assert_close(m(x, gen(1)), x, atol=1e-5, rtol=0)


def test_mixup_memory_is_fifo():
    m = MixupMemory(2, 3, memory_size=5)
    filled = []
    for first in (0, 3, 6):  # entries 0..8 in batches of 3
        m(numbered(first, 3), gen(first))
        filled.append(int(m.filled))
    assert filled == [3, 5, 5]  # capped at memory_size
    # the 5 newest entries (4..8) remain, in ring order: entry k sits in slot k % 5
    assert entry_ids(m.memory) == [5, 6, 7, 8, 4]
    assert int(m.head) == 9 % 5
    # a batch larger than the memory keeps its newest entries; the ring continues after them
    m2 = MixupMemory(2, 3, memory_size=5)
    m2(numbered(0, 7), gen(0))
    assert sorted(entry_ids(m2.memory)) == [2, 3, 4, 5, 6] and int(m2.filled) == 5
    m2(numbered(7, 1), gen(1))  # replaces the oldest entry, 2
    assert sorted(entry_ids(m2.memory)) == [3, 4, 5, 6, 7]


def test_mixup_memory_survives_state_dict_round_trip():
    a = MixupMemory(8, 10, ratio=0.4, memory_size=8)
    for seed in range(3):
        a(lms(5, seed=seed), gen(seed))
    state = copy.deepcopy(a.state_dict())
    assert {"memory", "filled", "head"} <= set(state)
    b = MixupMemory(8, 10, ratio=0.4, memory_size=8)
    b.load_state_dict(state)
    fresh = MixupMemory(8, 10, ratio=0.4, memory_size=8)
    for seed in (10, 11):  # identical outputs, and identical memory updates, call after call
        x = lms(4, seed=seed)
        out_a, out_b = a(x, gen(seed)), b(x, gen(seed))
        assert torch.equal(out_a, out_b)
        assert not torch.allclose(fresh(x, gen(seed)), out_a)  # the memory matters
    for key in state:
        assert torch.equal(a.state_dict()[key], b.state_dict()[key])


def test_mixup_is_deterministic_per_generator_seed():
    a, b = MixupMemory(8, 10, memory_size=8), MixupMemory(8, 10, memory_size=8)
    for m in (a, b):
        m(lms(6, seed=0), gen(0))
    x = lms(4, seed=1)
    a2, b2 = copy.deepcopy(a), copy.deepcopy(b)
    assert torch.equal(a(x, gen(3)), b(x, gen(3)))
    assert not torch.allclose(a2(x, gen(3)), b2(x, gen(4)))


def test_mixup_rejects_bad_shapes_and_options():
    with pytest.raises(ValueError, match="ratio"):
        MixupMemory(8, 10, ratio=1.5)
    with pytest.raises(ValueError, match="memory_size"):
        MixupMemory(8, 10, memory_size=0)
    with pytest.raises(ValueError, match="log-mel batches"):
        MixupMemory(8, 10)(torch.zeros(2, 1, 8, 11), gen())


# ----------------------------------------------------------------------------- RandomResizeCrop


def official_rrc(x: torch.Tensor, box: list[int], virtual_crop_scale=(1.0, 1.5)) -> torch.Tensor:
    """The authors' RandomResizeCrop of one example `[1, F, T]` for a given crop box."""
    _, f, t = x.shape
    canvas_h, canvas_w = int(f * virtual_crop_scale[0]), int(t * virtual_crop_scale[1])
    canvas = torch.zeros(1, canvas_h, canvas_w, dtype=x.dtype)
    x0, y0 = (canvas_w - t) // 2, (canvas_h - f) // 2
    canvas[:, y0:y0 + f, x0:x0 + t] = x
    i, j, h, w = box
    crop = canvas[:, i:i + h, j:j + w]
    return F.interpolate(crop.unsqueeze(0), size=(f, t), mode="bicubic",
                         align_corners=True).squeeze(0)


def interior(size: int, crop: int) -> torch.Tensor:
    """Output pixels whose bicubic taps stay inside the crop (sample position s in crop pixels:
    taps floor(s) - 1 .. floor(s) + 2)."""
    s = torch.arange(size, dtype=torch.float64) * (crop - 1) / max(size - 1, 1)
    return (s >= 1) & (s < crop - 2)


def test_random_resize_crop_keeps_shape_and_identity_crop_is_identity():
    x = lms(4, 64, 96, seed=0)
    out = RandomResizeCrop()(x, gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    identity = RandomResizeCrop(virtual_crop_scale=(1.0, 1.0), freq_scale=(1.0, 1.0),
                                time_scale=(1.0, 1.0))
    torch.testing.assert_close(identity(x, gen(1)), x, atol=5e-5, rtol=0)  # float32 grid


@pytest.mark.parametrize("f, t", [(64, 96), (40, 50)])
def test_random_resize_crop_boxes_stay_in_the_canvas(f, t):
    rrc = RandomResizeCrop()
    top, left, h, w = rrc.crop_boxes(4000, f, t, gen(0)).unbind(1)
    canvas_h, canvas_w = f, int(1.5 * t)
    assert h.min() >= max(1, int(0.6 * f)) and h.max() == f  # frequency capped at the canvas
    assert (h == f).float().mean() > 0.45  # P(U(0.6, 1.5) >= 1) = 0.556
    assert w.min() >= int(0.6 * t) and w.max() <= min(int(1.5 * t), canvas_w)
    assert w.max() > t  # time crops wider than the input (zoom out)
    assert (top >= 0).all() and (top + h <= canvas_h).all()
    assert (left >= 0).all() and (left + w <= canvas_w).all()
    assert left.min() == 0 and (left + w).max() == canvas_w  # the whole canvas is reachable


@pytest.mark.parametrize("virtual, freq, time", [
    ((1.0, 1.5), (0.6, 1.5), (0.6, 1.5)),  # BYOL-A's defaults
    ((1.25, 1.5), (0.6, 1.5), (0.6, 1.5)),  # a canvas taller than the input (y offset > 0)
])
def test_random_resize_crop_matches_the_official_algorithm(virtual, freq, time):
    x = lms(16, 64, 96, seed=3)
    rrc = RandomResizeCrop(virtual_crop_scale=virtual, freq_scale=freq, time_scale=time)
    out = rrc(x, gen(7))
    boxes = rrc.crop_boxes(16, 64, 96, gen(7))  # the first draws of the same generator
    assert len({tuple(b) for b in boxes.tolist()}) == 16  # per-example parameters
    for k, box in enumerate(boxes.tolist()):
        ref = official_rrc(x[k], box, virtual)
        keep = interior(64, box[2])[:, None] & interior(96, box[3])[None, :]
        assert keep.float().mean() > 0.7
        torch.testing.assert_close(out[k, 0][keep], ref[0][keep], atol=1e-4, rtol=1e-4)
        # near the crop's border the sampling differs (documented); overall it stays close
        assert (out[k] - ref).abs().mean() < 0.05 * x.std()
        # and it is a real crop: the content moved
        assert (out[k] - x[k]).abs().mean() > 0.1


def test_random_resize_crop_virtual_scale_is_per_axis_not_a_range():
    """virtual_crop_scale is (frequency factor, time factor), two independent canvas scales
    (official: `[int(s * c) for s, c in zip(lms.shape[-2:], virtual_crop_scale)]`)."""
    x = lms(4, 64, 96, seed=8)
    rrc = RandomResizeCrop(virtual_crop_scale=(1.5, 1.0))
    out = rrc(x, gen(9))
    for k, box in enumerate(rrc.crop_boxes(4, 64, 96, gen(9)).tolist()):
        ref = official_rrc(x[k], box, (1.5, 1.0))
        keep = interior(64, box[2])[:, None] & interior(96, box[3])[None, :]
        torch.testing.assert_close(out[k, 0][keep], ref[0][keep], atol=1e-4, rtol=1e-4)


def test_random_resize_crop_time_zoom_moves_content():
    """A time-only zoom-in: the output is the crop window stretched over all frames."""
    x = lms(2, 16, 40, seed=4)
    rrc = RandomResizeCrop(virtual_crop_scale=(1.0, 1.0), freq_scale=(1.0, 1.0),
                           time_scale=(0.5, 0.5))
    out = rrc(x, gen(0))
    top, left, h, w = rrc.crop_boxes(2, 16, 40, gen(0))[0].tolist()
    assert (top, h, w) == (0, 16, 20)
    for k in range(2):
        box = rrc.crop_boxes(2, 16, 40, gen(0))[k].tolist()
        # output frame c samples input frame left + c * (w - 1) / (T - 1): frame 0 is `left`
        torch.testing.assert_close(out[k, 0, :, 0], x[k, 0, :, box[1]], atol=1e-5, rtol=0)
        torch.testing.assert_close(out[k, 0, :, -1], x[k, 0, :, box[1] + box[3] - 1],
                                   atol=1e-5, rtol=0)


def test_random_resize_crop_differs_per_example_and_is_seeded():
    x = lms(1, 64, 96, seed=5).expand(8, -1, -1, -1).contiguous()
    rrc = RandomResizeCrop()
    out = rrc(x, gen(11))
    flat = out.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(8) * 1e9).min() > 1e-3  # all pairwise distinct
    assert torch.equal(out, rrc(x, gen(11)))
    assert not torch.allclose(out, rrc(x, gen(12)))


def test_random_resize_crop_rejects_bad_scales():
    with pytest.raises(ValueError, match="virtual_crop_scale"):
        RandomResizeCrop(virtual_crop_scale=(0.5, 1.0))
    with pytest.raises(ValueError, match="time_scale"):
        RandomResizeCrop(time_scale=(1.5, 0.6))


# ----------------------------------------------------------------------------- RandomLinearFader


@pytest.mark.parametrize("gain", [1.0, 0.25])
def test_linear_fader_adds_a_linear_time_ramp(gain):
    x = lms(256, 8, 20, seed=6)
    out = RandomLinearFader(gain)(x, gen(0))
    d = (out - x).double()
    assert torch.allclose(d, d[:, :, :1, :].expand_as(d), atol=1e-6)  # constant across frequency
    ramp = d[:, 0, 0]  # [B, T]
    assert ramp.diff(n=2, dim=1).abs().max() < 1e-5  # linear over time
    head, tail = ramp[:, 0], ramp[:, -1]
    assert head.abs().max() <= gain + 1e-6 and tail.abs().max() <= gain + 1e-6
    assert head.max() > 0.9 * gain and head.min() < -0.9 * gain  # spans [-gain, gain]
    assert tail.max() > 0.9 * gain and tail.min() < -0.9 * gain
    assert (head - tail).abs().max() > gain  # head and tail drawn independently
    assert torch.equal(out, RandomLinearFader(gain)(x, gen(0)))


# ----------------------------------------------------------------------------- BatchNormalize


def test_batch_normalize_standardises_the_batch():
    x = 3.0 + 5.0 * lms(8, 16, 20, seed=7)
    out = BatchNormalize()(x, gen())
    assert abs(out.mean().item()) < 1e-5
    assert abs(out.std().item() - 1) < 1e-5  # unbiased
    # per channel
    two = torch.cat([x, 0.1 * x - 7], dim=1)
    out2 = BatchNormalize()(two, gen())
    for c in range(2):
        assert abs(out2[:, c].mean().item()) < 1e-5 and abs(out2[:, c].std().item() - 1) < 1e-5
    assert torch.isfinite(BatchNormalize()(torch.full((4, 1, 8, 10), 2.5), gen())).all()


# ----------------------------------------------------------------------------- BYOL-A end to end


def byol_a_recipe() -> dict:
    return {
        "modality": "audio",
        "synthetic": True,
        "model": {
            "frontend": {"name": "audio.logmel"},
            "encoder": {"name": "audio.audiontt2020", "d": 64},
            "projector": {"name": "mlp", "hidden_dim": 128, "out_dim": 32},
            "predictor": {"name": "mlp", "hidden_dim": 128, "out_dim": 32},
        },
        "augmentations": [
            {"name": "audio.mixup", "memory_size": 64},
            {"name": "audio.random_resize_crop"},
            {"name": "audio.linear_fader"},
            {"name": "audio.post_normalize"},
        ],
        "objective": {"name": "byol", "pooling": "mean_plus_max"},
        "train": {"batch_size": 16, "device": "cpu", "progress": False},
    }


@pytest.fixture(scope="module")
def byol_a_parts():
    recipe = recipe_from_dict(byol_a_recipe(), "test")
    train, _, meta = load_datasets(recipe)

    def make_objective():
        host, device = split_augmentations(build_augmentations(recipe, meta))
        assert host == [] and len(device) == 4
        return build_objective(recipe, meta, device)

    return train, meta, make_objective


def audio_batch(train, seed: int, b: int = 16):
    items = [(train.sample(i, gen(seed + i)), seed, 0) for i in range(b)]
    return Collate()(items)


def test_byol_a_views_depend_only_on_the_batch_seed(byol_a_parts):
    train, meta, make_objective = byol_a_parts
    assert (meta["n_mels"], meta["num_frames"]) == (64, 96)
    batch = audio_batch(train, seed=3)
    torch.manual_seed(1)  # the global RNG plays no part
    v1, v2 = make_objective().make_views(batch)
    assert v1.shape == v2.shape == (16, 1, 64, 96)
    assert torch.isfinite(v1).all() and torch.isfinite(v2).all()
    assert (v1 - v2).abs().mean() > 0.1  # two different views
    torch.manual_seed(2)
    w1, w2 = make_objective().make_views(batch)  # a fresh objective: same seed, same views
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    batch.seed = 4
    u1, _ = make_objective().make_views(batch)
    assert (u1 - v1).abs().mean() > 0.1
    # post-normalised over both views together
    both = torch.cat([v1, v2])
    assert abs(both.mean().item()) < 1e-4 and abs(both.std().item() - 1) < 1e-4


def test_byol_a_trains_one_step_and_checkpoints_the_mixup_memory(byol_a_parts):
    train, _, make_objective = byol_a_parts
    torch.manual_seed(0)
    objective = make_objective()
    objective.train()
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in objective.online.state_dict().items()}
    loss, logs = objective(audio_batch(train, seed=5))
    assert torch.isfinite(loss) and 0 <= loss.item() <= 8
    loss.backward()
    optimizer.step()
    objective.update_target(0.99)
    assert not torch.equal(before["encoder.fc.0.weight"],
                           objective.online.state_dict()["encoder.fc.0.weight"])
    state = objective.state_dict()
    keys = [k for k in state if k.endswith("memory")]
    assert keys == ["augmentations.0.memory"]
    assert int(state["augmentations.0.filled"]) == 32  # both views of 16 examples pushed
    assert state["augmentations.0.memory"].shape == (64, 1, 64, 96)
    # a fresh objective loaded from the state mixes like the trained one
    other = make_objective()
    other.load_state_dict(state)
    batch = audio_batch(train, seed=6)
    a, b = objective.make_views(batch), other.make_views(batch)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
