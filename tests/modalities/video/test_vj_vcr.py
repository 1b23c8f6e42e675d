"""VJ-VCR's pieces: the causal frame encoder, the future masker, the sequence predictor with
latent heads, the predictive-VCR objective (latent and pixel targets) and the recipes."""

from __future__ import annotations

import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.build import build_masker, build_objective, load_datasets, load_recipe
from polyjepa.encoders import Backbone
from polyjepa.maskers import FutureMasker
from polyjepa.modalities.video.encoders import FrameCNN, FrameDecoder
from polyjepa.modalities.video.synthetic import forking_videos
from polyjepa.objectives import PredictiveVCR
from polyjepa.predictors import SequenceMLP
from polyjepa.regularizers import VarianceCovariance
from polyjepa.types import Batch, Masks


def clips(b: int = 8, t: int = 8, side: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, t, 1, side, side, generator=torch.Generator().manual_seed(seed))


def test_frame_encoder_is_causal_in_time():
    torch.manual_seed(0)
    enc = FrameCNN(channels=1, dim=16, widths=(8, 8, 8)).eval()
    x = clips()
    changed = x.clone()
    changed[:, 5:] = torch.rand_like(changed[:, 5:])
    a, b = enc(x), enc(changed)
    assert a.shape == (8, 8, 16)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # frames 0-4 never see frames 5+
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_future_masker_takes_steps_of_tokens():
    m = FutureMasker(num_tokens=15, context_steps=3, target_steps=12)(4, torch.Generator())
    assert m.context[0].tolist() == [0, 1, 2] and m.target[0, 0].tolist() == list(range(3, 15))
    tubes = FutureMasker(num_tokens=8 * 16, context_steps=2, target_steps=3, grid=(8, 4, 4))
    m = tubes(2, torch.Generator())
    assert m.context.shape == (2, 32) and m.target[0, 0].tolist() == list(range(32, 80))
    with pytest.raises(ValueError, match="fit"):
        FutureMasker(num_tokens=10, context_steps=5, target_steps=6)


def test_sequence_mlp_heads():
    pred = SequenceMLP(in_dim=16, num_context=3, num_target=5, hidden=32, num_latents=4)
    assert pred(torch.randn(2, 3, 16)).shape == (2, 4, 5, 16)


def objective(target: str = "latent", heads: int = 1, seed: int = 0) -> PredictiveVCR:
    torch.manual_seed(seed)
    backbone = Backbone(torch.nn.Identity(), FrameCNN(channels=1, dim=16, widths=(8, 8, 8)))
    decoder = FrameDecoder(16, channels=1, frame_size=(32, 32), width=8) if target == "pixels" else None
    return PredictiveVCR(backbone, SequenceMLP(16, 3, 5, hidden=64, num_latents=heads),
                         [VarianceCovariance(gather_distributed=False)], decoder, target)


def batch_of(x: torch.Tensor) -> Batch:
    b = x.shape[0]
    masks = Masks(torch.arange(3).repeat(b, 1), torch.arange(3, 8).repeat(b, 1, 1))
    return Batch(x=x, y=torch.zeros(b, dtype=torch.long), masks=masks)


def test_gradients_reach_the_encoder_through_context_and_targets():
    obj = objective()
    loss, logs = obj(batch_of(clips()))
    assert {"loss_pred", "vcreg_std", "vcreg_cov"} <= set(logs)
    # the target side is not detached: a loss on the targets alone moves the encoder
    h = obj.online(clips())
    h[:, 3:].sum().backward()
    assert obj.online.encoder.spatial[0][0].weight.grad.abs().sum() > 0
    loss.backward()
    assert all(p.grad is not None for p in obj.predictor.parameters())
    assert obj.export_backbone() is obj.online


def test_pixel_target_decodes_future_frames():
    obj = objective("pixels")
    seen = {}
    decoder_forward = obj.decoder.forward

    def spy(z):
        out = decoder_forward(z)
        seen["shape"] = out.shape
        return out

    obj.decoder.forward = spy
    loss, _ = obj(batch_of(clips()))
    assert seen["shape"] == (8, 1, 5, 1, 32, 32) and torch.isfinite(loss)
    with pytest.raises(ValueError, match="decoder"):
        PredictiveVCR(obj.online, obj.predictor, target="pixels")


def _train(obj: PredictiveVCR, x: torch.Tensor, steps: int) -> float:
    """Train the predictor on the first 96 clips over a fixed random encoder (its BatchNorm on
    batch statistics, so latents are of unit scale and keep which way the square went); the
    prediction error (the energy of the best head) on the other 32, in representation space."""
    obj.online.requires_grad_(False)
    opt = torch.optim.Adam(obj.predictor.parameters(), lr=3e-3)
    obj.train()
    for step in range(steps):
        idx = torch.randint(0, 96, (32,), generator=torch.Generator().manual_seed(step))
        loss, _ = obj(batch_of(x[idx]))  # the regularizer term is constant here
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(obj(batch_of(x[96:]))[1]["loss_pred"])


def test_latent_heads_predict_a_forking_future_better_than_one_head():
    """A square falls, then turns left or right at random: one head can only predict the
    average future; two heads (z inferred as the argmin of the energy) can predict both."""
    frames, _ = forking_videos(128, num_frames=8, fork=3, seed=0)
    x = torch.from_numpy(frames).unsqueeze(2).float() / 255
    deterministic = _train(objective(heads=1, seed=1), x, 150)
    latent = _train(objective(heads=2, seed=1), x, 150)
    assert latent < 0.6 * deterministic, (latent, deterministic)


def test_recipes_build_and_share_the_encoder():
    for name in ("vj_vcr", "vj_vcr_demo", "vj_vcr_latent", "video_pixel_baseline"):
        recipe = load_recipe(name, ["synthetic=true", "masker.target_steps=5"])
        _, _, meta = load_datasets(recipe)
        obj = build_objective(recipe, meta)
        assert isinstance(obj, PredictiveVCR) and isinstance(obj.online.encoder, FrameCNN)
        masker = build_masker(recipe, meta, obj.online.layout)
        assert (masker.num_context, masker.num_target) == (3, 5)
    assert load_recipe("vj_vcr_latent").cfg.model.predictor["num_latents"] == 5
    assert load_recipe("video_pixel_baseline").cfg.objective["target"] == "pixels"


def sparse_objective(latent_dim: int = 4, l1: float = 0.1, seed: int = 0) -> PredictiveVCR:
    torch.manual_seed(seed)
    backbone = Backbone(torch.nn.Identity(), FrameCNN(channels=1, dim=16, widths=(8, 8, 8)))
    return PredictiveVCR(backbone, SequenceMLP(16, 3, 5, hidden=64, latent_dim=latent_dim),
                         [VarianceCovariance(gather_distributed=False)], latent_l1=l1,
                         latent_steps=20, latent_step_size=0.05)


def test_a_sparse_latent_predicts_a_forking_future_better_than_none():
    """VJ-VCR's continuous latent, inferred per clip by FISTA, carries which way the square
    turned: the prediction error with it is well under the deterministic predictor's."""
    frames, _ = forking_videos(128, num_frames=8, fork=3, seed=0)
    x = torch.from_numpy(frames).unsqueeze(2).float() / 255
    deterministic = _train(objective(heads=1, seed=1), x, 150)
    sparse = _train(sparse_objective(seed=1), x, 150)
    assert sparse < 0.6 * deterministic, (sparse, deterministic)


def _ridge_r2(x: torch.Tensor, y: torch.Tensor) -> float:
    """R² of a ridge regression from `x [N, F]` to `y [N, G]`, fitted on the first half."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    half = len(x) // 2
    model = Ridge(alpha=1e-3).fit(x[:half].numpy(), y[:half].numpy())
    return float(r2_score(y[half:].numpy(), model.predict(x[half:].numpy()),
                          multioutput="variance_weighted"))


def test_the_l1_penalty_keeps_the_sparse_latent_from_copying_the_target():
    """Leakage: the square now falls in a column the past shows, so the future depends on the
    context and on the branch. Without the L1 penalty z learns the target itself: it alone
    reconstructs much of the future latents and the predictor stops using the context (its
    prediction with the prior z = 0 is far off). With it, z holds less of the target and the
    prior prediction stays near the deterministic predictor's, while the best z still beats it."""
    frames, _ = forking_videos(256, num_frames=8, fork=3, seed=0, shift=6)
    x = torch.from_numpy(frames).unsqueeze(2).float() / 255
    deterministic = _train(objective(heads=1, seed=1), x, 150)
    found = {}
    for l1 in (0.0, 0.1):
        obj = sparse_objective(latent_dim=8, l1=l1, seed=1)
        best = _train(obj, x, 150)
        with torch.no_grad():
            h = obj.online(x[128:])
            context, targets = h[:, :3], h[:, 3:]
            z = obj.infer_latent(context, targets)
            prior = float((obj.predictor(context)[:, 0] - targets).square().mean())
        found[l1] = (best, prior, _ridge_r2(z, targets.flatten(1)))
    (_, prior_free, leak_free), (best, prior, leak) = found[0.0], found[0.1]
    assert prior_free > 10 * deterministic and leak_free > 0.45, found  # the shortcut
    assert leak < leak_free - 0.15 and prior < 2 * deterministic, (found, deterministic)
    assert best < 0.6 * deterministic, (found, deterministic)


def test_fista_solves_a_lasso_and_the_l1_weight_limits_what_the_latent_holds():
    from polyjepa.latents import fista, soft_threshold

    assert torch.equal(soft_threshold(torch.tensor([-2.0, -0.5, 0.3, 1.5]), 1.0),
                       torch.tensor([-1.0, 0.0, 0.0, 0.5]))
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 6, generator=g)
    b = torch.randn(3, 12, generator=g)  # three independent lasso problems
    step = 1 / float(torch.linalg.matrix_norm(a, 2) ** 2) / 2

    def energy(z):
        return 0.5 * (z @ a.T - b).square().sum(-1)

    z = fista(energy, torch.zeros(3, 6), 0.5, 500, step)
    # optimality of the lasso: |grad| <= λ where z = 0, grad = -λ sign(z) where z != 0
    grad = (z @ a.T - b) @ a
    active = z != 0
    assert torch.allclose(grad[active], -0.5 * torch.sign(z[active]), atol=1e-3)
    assert bool((grad[~active].abs() <= 0.5 + 1e-3).all())
    counts = [int((fista(energy, torch.zeros(3, 6), l1, 500, step) != 0).sum())
              for l1 in (0.01, 1.0, 100.0)]
    assert counts[0] > counts[1] > counts[2] == 0  # more L1, fewer active coordinates


def test_the_latent_is_inferred_without_touching_the_predictor_and_zero_is_the_prior():
    obj = sparse_objective(l1=0.0)
    h = obj.online(clips())
    context, targets = h[:, :3], h[:, 3:]
    z = obj.infer_latent(context, targets)
    assert z.shape == (8, 4) and not z.requires_grad
    assert all(p.grad is None for p in obj.predictor.parameters())
    with torch.no_grad():
        prior = (obj.predictor(context)[:, 0] - targets).square().mean()
        best = (obj.predictor(context, z)[:, 0] - targets).square().mean()
    assert best < prior  # the inferred z explains the target better than the prior z = 0
    loss, logs = obj(batch_of(clips()))
    assert torch.isfinite(loss) and 0 <= float(logs["latent_nonzero"]) <= 1
    with pytest.raises(ValueError, match="not both"):
        SequenceMLP(16, 3, 5, num_latents=2, latent_dim=4)
