"""SIGReg (LeJEPA's regularizer), the LeJEPA objective and DirectPred's predictor on real
tensors: what the statistic says about known distributions, where its gradient pushes, how its
directions follow the step, and that both train inside the trainer."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _helpers import build, read_metrics, single_thread, tiny_recipe, write_recipe  # noqa: F401

from polyjepa.build import assemble
from polyjepa.errors import ConfigError
from polyjepa.objectives import LeJEPA
from polyjepa.predictors import DirectPred
from polyjepa.regularizers import SIGReg, epps_pulley_grid
from polyjepa.train import Trainer, pretrain


def normal_expectation(t_max: float = 3.0, knots: int = 17) -> float:
    """E[statistic] for a standard normal sample: N E|φ̂ - φ|² = 1 - e^{-t²}, integrated."""
    t, w = epps_pulley_grid(t_max, knots)
    return float(((1 - torch.exp(-t.square())) * w).sum())


def test_the_quadrature_integrates_the_weight():
    _, w = epps_pulley_grid(3.0, 17)
    exact = math.sqrt(2 * math.pi) * math.erf(3 / math.sqrt(2))  # ∫_{-3}^{3} e^{-t²/2} dt
    assert abs(float(w.sum()) - exact) < 0.01
    assert abs(normal_expectation() - 1.05) < 0.01


def test_standard_normal_embeddings_score_their_expectation_and_departures_far_more():
    g = torch.Generator().manual_seed(0)
    reg = SIGReg(num_slices=256)
    normal = [float(reg.statistic(torch.randn(512, 32, generator=g))) for _ in range(5)]
    assert abs(sum(normal) / 5 - normal_expectation()) < 0.25  # sampling noise only
    z = torch.randn(512, 32, generator=g)
    departures = {
        "collapsed": 0.01 * z,
        "low rank": z[:, :3] @ torch.randn(3, 32, generator=g) / math.sqrt(3),
        "shifted": z + 1.0,
        "anisotropic": z * torch.linspace(0.1, 2.0, 32),
        "heavy tailed": z * torch.distributions.Exponential(1.0).sample((512, 1)),
    }
    for name, x in departures.items():
        assert float(reg.statistic(x)) > 5 * normal_expectation(), name


def test_the_characteristic_function_and_its_gradient_are_the_plain_expressions():
    """The statistic's custom backward (reusing the forward's cos and sin) against autograd of the
    plain expression: float64 gradcheck, and the same gradient as autograd in fp32."""
    from polyjepa.regularizers import _CharacteristicFunction

    t, _ = epps_pulley_grid(3.0, 9)
    x = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(_CharacteristicFunction.apply, (x.requires_grad_(), t))
    real, imag = _CharacteristicFunction.apply(x, t)
    xt = x.detach().unsqueeze(-1) * t
    torch.testing.assert_close(real, xt.cos().mean(0))
    torch.testing.assert_close(imag, xt.sin().mean(0))
    grads = []
    for fn in (_CharacteristicFunction.apply,
               lambda x, t: ((x.unsqueeze(-1) * t).cos().mean(0), (x.unsqueeze(-1) * t).sin().mean(0))):
        z = x.detach().float().requires_grad_()
        real, imag = fn(z, t.float())
        ((real - 0.5).square().sum() + (imag * torch.arange(9.0)).sum()).backward()
        grads.append(z.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_lejepas_loss_curve_is_the_plain_expressions(tmp_path, monkeypatch):
    """The custom backward is not bit-exact by construction (other summation order): a LeJEPA
    run's first 20 losses match those of autograd through the plain expression."""
    from polyjepa import regularizers

    steps = ["train.max_steps=20", "train.log_every=1"]
    recipe = write_recipe(lejepa_recipe(), tmp_path)
    fast = [r["loss"] for r in read_metrics(pretrain(recipe, steps, tmp_path / "fast")) if "loss" in r]

    class Plain:
        @staticmethod
        def apply(x, t):
            xt = x.unsqueeze(-1) * t
            return xt.cos().mean(0), xt.sin().mean(0)

    monkeypatch.setattr(regularizers, "_CharacteristicFunction", Plain)
    plain = [r["loss"] for r in read_metrics(pretrain(recipe, steps, tmp_path / "plain")) if "loss" in r]
    assert len(fast) == 20 and fast != fast[:1] * 20
    assert fast == pytest.approx(plain, rel=1e-4, abs=1e-5)


def test_its_gradient_spreads_a_collapsed_batch():
    g = torch.Generator().manual_seed(1)
    z = (0.01 * torch.randn(256, 8, generator=g)).requires_grad_()
    reg = SIGReg(num_slices=64)
    opt = torch.optim.Adam([z], lr=0.05)
    first = float(reg.statistic(z.detach()))
    for step in range(150):
        reg.set_step(step)  # fresh directions every step, as in training
        loss, logs = reg(z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(reg.statistic(z.detach())) < first / 20
    assert 0.6 < float(z.detach().std(0).mean()) < 1.4  # spread to about unit variance


def test_directions_are_the_steps_and_the_same_in_every_copy():
    a, b = SIGReg(num_slices=16), SIGReg(num_slices=16)  # e.g. two ranks
    a.set_step(3), b.set_step(3)
    assert torch.equal(a.directions(8, torch.device("cpu")), b.directions(8, torch.device("cpu")))
    d3 = a.directions(8, torch.device("cpu"))
    assert torch.allclose(d3.norm(dim=0), torch.ones(16))
    a.set_step(4)
    assert not torch.allclose(a.directions(8, torch.device("cpu")), d3)
    a.set_step(3)
    assert torch.equal(a.directions(8, torch.device("cpu")), d3)  # a resumed run draws the same


def test_the_trainer_sets_the_step_before_each_forward(tmp_path):
    raw = tiny_recipe(train={"max_steps": 3}, regularizers=[{"name": "sigreg", "num_slices": 32}])
    trainer = Trainer(build(raw), tmp_path)
    (reg,) = [m for m in trainer.objective.modules() if isinstance(m, SIGReg)]
    seen = []
    forward = type(reg).forward

    def spy(self, z):
        seen.append(self.step)
        return forward(self, z)

    type(reg).forward = spy
    try:
        trainer.fit()
    finally:
        type(reg).forward = forward
    assert seen == [0, 1, 2]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["sigreg"]) for r in rows if "sigreg" in r)


def lejepa_recipe(**objective) -> dict:
    """The tiny tabular recipe with LeJEPA: two views of SCARF-corrupted rows."""
    raw = tiny_recipe(objective={"name": "lejepa", "num_slices": 64, **objective},
                      augmentations=[{"name": "tabular.corrupt", "rate": 0.3}])
    raw["model"]["predictor"] = None
    raw["model"]["projector"] = {"name": "mlp", "hidden_dim": 32, "out_dim": 16}
    raw["masker"] = None
    return raw


def test_lejepa_rejects_fewer_than_two_views():
    with pytest.raises(ConfigError, match="objective.views must be >= 2"):
        assemble(build(lejepa_recipe(views=1)))


def test_lejepa_without_augmentations_says_what_to_add():
    raw = lejepa_recipe()
    raw.pop("augmentations")
    run = assemble(build(raw))
    batch = run.collate([(run.splits.train[i], 0, 0) for i in range(4)])
    with pytest.raises(ValueError, match="needs 2 augmented views per sample, the batch has 0"):
        run.objective(batch)


def test_lejepa_loss_is_its_two_terms(tmp_path):
    torch.manual_seed(0)
    run = assemble(build(lejepa_recipe(lamb=0.25)))
    objective: LeJEPA = run.objective
    batch = run.collate([(run.splits.train[i], 0, 0) for i in range(32)])
    noisy = [{"num": batch.x["num"] + 0.1 * torch.randn_like(batch.x["num"]), "cat": batch.x["cat"]}
             for _ in range(2)]
    batch.views = noisy
    objective.eval()  # BatchNorm statistics fixed, so the two computations below agree
    loss, logs = objective(batch)
    with torch.no_grad():
        p = torch.stack([objective.projector(objective.online.embed(v, "mean")) for v in noisy])
        pred = (p.mean(0) - p).square().mean()
        sig = torch.stack([objective.sigreg.statistic(p[i]) for i in range(2)]).mean()
    assert torch.allclose(logs["loss_pred"], pred, atol=1e-5)
    assert torch.allclose(logs["sigreg"], sig, atol=1e-4)
    assert torch.allclose(loss, 0.75 * pred + 0.25 * sig, atol=1e-4)


def test_directpred_shares_the_correlations_eigenvectors():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(6, 6, generator=g)
    pred = DirectPred(6, rho=0.3, eps=0.01)
    for step in range(5):
        pred.set_step(step)  # folds the previous step's inputs, sets W
        for _ in range(2):  # two views a step share W
            before = pred.weight.clone()
            pred(torch.randn(64, 6, generator=g) @ mix)
            assert torch.equal(pred.weight, before)
    pred.set_step(5)
    f, w = pred.corr.double(), pred.weight.double()
    assert torch.allclose(w, w.T, atol=1e-6)
    assert torch.allclose(w @ f, f @ w, atol=1e-4 * float(f.abs().max()))  # same eigenvectors
    s = torch.linalg.eigvalsh(f).clamp_min(0)
    expected = (s / s.max()).sqrt() + 0.01
    assert torch.allclose(torch.linalg.eigvalsh(w), expected.sort().values, atol=1e-5)
    pred.eval()
    pred(torch.randn(64, 6, generator=g))
    pred.set_step(6)
    assert torch.equal(pred.corr.double(), f)  # only training inputs count
    assert not any(p.requires_grad for p in pred.parameters())


def test_byol_with_directpred_trains(tmp_path):
    raw = tiny_recipe(train={"max_steps": 4}, objective={"name": "byol"},
                      augmentations=[{"name": "tabular.corrupt", "rate": 0.3}])
    raw["model"]["projector"] = {"name": "mlp", "hidden_dim": 32, "out_dim": 8}
    raw["model"]["predictor"] = {"name": "directpred"}
    raw["masker"] = None
    run = pretrain(write_recipe(raw, tmp_path), [], tmp_path / "run")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["objective"]
    corr, weight = state["predictor.corr"], state["predictor.weight"]
    assert int(state["predictor.folded"]) == 3  # steps 1-3 folded the steps before them
    assert torch.allclose(weight @ corr, corr @ weight, atol=1e-4 * float(corr.abs().max()))


def test_lejepa_trains_on_table_rows(tmp_path):
    run = pretrain(write_recipe(lejepa_recipe(), tmp_path), [], tmp_path / "run")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) and r["sigreg"] > 0 for r in rows if "sigreg" in r)
    assert (run / "encoder.pt").is_file()


def test_jepa_accepts_sigreg_beside_its_ema_teacher(tmp_path):
    raw = tiny_recipe(regularizers=[{"name": "sigreg", "weight": 0.1, "num_slices": 32}])
    run = pretrain(write_recipe(raw, tmp_path), [], tmp_path / "run")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("sigreg" in r for r in rows)


def test_series_views_crop_scale_and_jitter_only_the_real_steps():
    from polyjepa.modalities.timeseries.augment import SeriesViews

    t = torch.linspace(0, 1, 20)
    values = torch.stack([torch.stack([t, -t]), torch.stack([t, -t])])  # [2, 2, 20]
    values[1, :, 12:] = 0  # the second series has 12 real steps, then padding
    x = {"values": values, "length": torch.tensor([20, 12])}
    g = torch.Generator().manual_seed(0)
    plain = SeriesViews(crop=(0.5, 0.5), scale=0.0, jitter=0.0)(x, g)["values"]
    assert torch.equal(plain[1, :, 12:], torch.zeros(2, 8))  # padding untouched
    first = plain[0, 0]
    assert torch.all(first[1:] >= first[:-1])  # a stretched window of a rising ramp still rises
    assert float(first[-1] - first[0]) == pytest.approx(9 / 19, abs=1e-5)  # 10 of its 20 steps
    noisy = SeriesViews(crop=(1.0, 1.0), scale=0.1, jitter=0.05)(x, g)["values"]
    assert not torch.equal(noisy[:, :, :12], values[:, :, :12])
    assert torch.equal(noisy[1, :, 12:], torch.zeros(2, 8))
    with pytest.raises(ValueError, match="timeseries.views"):
        SeriesViews(crop=(0.0, 1.0))
