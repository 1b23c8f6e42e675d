"""EMA momentum schedules, `ema_update`, the trainer's target update, and lr/wd schedules."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import build, single_thread, tiny_recipe  # noqa: F401
from torch import nn

from polyjepa.ema import ema_update, make_target, momentum_at
from polyjepa.schedules import cosine, warmup_cosine
from polyjepa.train import Trainer

# ------------------------------------------------------------------------------ momentum_at


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_momentum_endpoints_and_monotone(schedule):
    start, end, total = 0.996, 1.0, 100
    values = [momentum_at(s, total, start, end, schedule) for s in range(total + 1)]
    assert values[0] == pytest.approx(start, abs=1e-12)
    assert values[-1] == pytest.approx(end, abs=1e-12)
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert values[1] > values[0] and values[-1] > values[-2]
    # clipped outside [0, total]
    assert momentum_at(-5, total, start, end, schedule) == values[0]
    assert momentum_at(10 * total, total, start, end, schedule) == values[-1]


def test_momentum_formulas():
    assert momentum_at(50, 100, 0.9, 1.0, "linear") == pytest.approx(0.95)
    assert momentum_at(25, 100, 0.9, 1.0, "cosine") == pytest.approx(
        1.0 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)
    # cosine is slower than linear at the start (BYOL), same at the midpoint
    assert momentum_at(10, 100, 0.9, 1.0, "cosine") < momentum_at(10, 100, 0.9, 1.0, "linear")
    assert momentum_at(50, 100, 0.9, 1.0, "cosine") == pytest.approx(0.95)


def test_momentum_constant():
    assert {momentum_at(s, 10, 0.99, 1.0, "constant") for s in range(12)} == {0.99}


def test_momentum_zero_total_steps_does_not_divide_by_zero():
    assert momentum_at(0, 0, 0.9, 1.0, "linear") == 0.9
    assert momentum_at(1, 0, 0.9, 1.0, "linear") == 1.0


def test_momentum_unknown_schedule():
    with pytest.raises(ValueError, match="ema.schedule.*'exp'.*cosine, linear or constant"):
        momentum_at(0, 10, 0.9, 1.0, "exp")


# ------------------------------------------------------------------------------ ema_update


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_ema_update_formula_params_float_buffers_and_int_buffers():
    torch.manual_seed(0)
    online = _net()
    target = make_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online.train()(torch.randn(16, 4))  # moves online's BN running stats and num_batches_tracked
    online.train()(torch.randn(16, 4))
    old_t = {k: v.clone() for k, v in target.state_dict().items()}
    src = online.state_dict()
    m = 0.7
    ema_update(target, online, m)
    new_t = target.state_dict()
    assert src["1.num_batches_tracked"].item() == 2 and old_t["1.num_batches_tracked"].item() == 0
    for k, v in old_t.items():
        if v.is_floating_point():
            torch.testing.assert_close(new_t[k], m * v + (1 - m) * src[k], rtol=1e-6, atol=1e-7)
            assert not torch.equal(new_t[k], v), k  # running_mean / running_var included
        else:
            assert new_t[k].dtype == torch.long and torch.equal(new_t[k], src[k]), k
    assert all(not p.requires_grad for p in target.parameters())


def test_ema_update_momentum_one_keeps_target_and_zero_copies_online():
    torch.manual_seed(0)
    online, target = _net(), _net()
    old = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, online, 1.0)
    for k, v in target.state_dict().items():
        assert torch.equal(v, old[k] if v.is_floating_point() else online.state_dict()[k])
    ema_update(target, online, 0.0)
    for k, v in target.state_dict().items():
        assert torch.equal(v, online.state_dict()[k])


def test_trainer_step_updates_target_by_ema_not_gradients(tmp_path):
    trainer = Trainer(build(tiny_recipe(train={"max_steps": 10},
                                        ema={"start": 0.9, "end": 1.0, "schedule": "linear"})),
                      tmp_path)
    objective = trainer.objective
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in optimized for p in objective.target.parameters())
    target0 = {k: v.clone() for k, v in objective.target.state_dict().items()}
    online0 = {k: v.clone() for k, v in objective.online.state_dict().items()}
    for k, v in target0.items():
        assert torch.equal(v, online0[k])
    row = trainer._train_step(trainer._batches())
    assert trainer.step == 1
    m = momentum_at(1, 10, 0.9, 1.0, "linear")
    assert row["momentum"] == pytest.approx(m) and m == pytest.approx(0.91)
    online1 = objective.online.state_dict()
    target1 = objective.target.state_dict()
    changed = 0
    for k, v in target0.items():
        expected = torch.lerp(v, online1[k], 1 - m)
        torch.testing.assert_close(target1[k], expected, rtol=1e-6, atol=1e-8)
        if not torch.equal(online1[k], online0[k]):
            changed += 1
            assert not torch.equal(target1[k], v), k  # moved toward online...
            assert not torch.equal(target1[k], online1[k]), k  # ...but only part of the way
    assert changed > 10
    assert all(p.grad is None for p in objective.target.parameters())


# ------------------------------------------------------------------------------ lr / wd schedules


def test_warmup_cosine_endpoints_and_shape():
    total, warm, start, peak, end = 100, 10, 0.0, 1e-3, 1e-5
    values = [warmup_cosine(s, total, warm, start, peak, end) for s in range(total + 1)]
    assert values[0] == start
    assert values[warm] == pytest.approx(peak)
    assert values[-1] == pytest.approx(end)
    assert all(b > a for a, b in zip(values[:warm], values[1 : warm + 1], strict=True))
    decay = values[warm:]
    assert all(b <= a for a, b in zip(decay, decay[1:], strict=False))
    assert values[5] == pytest.approx(peak / 2)
    assert values[warm + 45] == pytest.approx((peak + end) / 2)  # cosine midpoint
    assert warmup_cosine(10 * total, total, warm, start, peak, end) == pytest.approx(end)


def test_warmup_cosine_without_warmup_starts_at_peak():
    assert warmup_cosine(0, 50, 0, 0.0, 1.0, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(50, 50, 0, 0.0, 1.0, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("start,end", [(0.04, 0.4), (0.4, 0.04)])
def test_cosine_endpoints_and_monotone(start, end):
    values = [cosine(s, 40, start, end) for s in range(41)]
    assert values[0] == pytest.approx(start) and values[-1] == pytest.approx(end)
    assert values[20] == pytest.approx((start + end) / 2)
    sign = 1 if end > start else -1
    assert all(sign * (b - a) >= 0 for a, b in zip(values, values[1:], strict=False))
    assert cosine(100, 40, start, end) == pytest.approx(end)
