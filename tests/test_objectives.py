"""JEPA and BYOL objectives: gradients, context isolation, shapes, register tokens, EMA targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _helpers import build, read_metrics, single_thread, tiny_recipe  # noqa: F401
from torch.utils.data import default_collate

from polyjepa.build import build_masker, build_objective, load_datasets
from polyjepa.data import Collate
from polyjepa.encoders import Backbone, TransformerEncoder, gather_tokens
from polyjepa.modalities.tabular.tokenizer import FeatureTokenizer
from polyjepa.objectives import BYOL, JEPA
from polyjepa.pooling import pool
from polyjepa.predictors import JEPAPredictor, MLPHead
from polyjepa.train import Trainer
from polyjepa.types import Batch, Tokens

B = 16


def jepa_setup(encoder: dict | None = None, seed: int = 0):
    """A tiny JEPA objective on the synthetic table and one collated batch of B rows."""
    recipe = build(tiny_recipe(encoder=encoder))
    train, _, meta = load_datasets(recipe)
    torch.manual_seed(seed)
    objective = build_objective(recipe, meta)
    collate = Collate(build_masker(recipe, meta))
    batch = collate([(train[i], 1234, 0) for i in range(B)])
    return objective, batch, meta


def capture_loss_inputs(objective: JEPA) -> list:
    """Replace the objective's loss function by one that records `(pred, targets)`."""
    seen: list = []
    original = objective.loss_fn

    def loss_fn(pred, targets):
        seen.append((pred, targets))
        return original(pred, targets)

    objective.loss_fn = loss_fn
    return seen


# ------------------------------------------------------------------------------------ JEPA


def test_jepa_target_encoder_is_frozen_and_gets_no_grad():
    objective, batch, _ = jepa_setup()
    assert isinstance(objective, JEPA)
    assert all(not p.requires_grad for p in objective.target.parameters())
    loss, logs = objective(batch)
    assert loss.requires_grad and torch.isfinite(loss)
    assert set(logs) == {"loss_pred"} and not logs["loss_pred"].requires_grad
    loss.backward()
    assert all(p.grad is None for p in objective.target.parameters())
    online = dict(objective.online.named_parameters())
    with_grad = [n for n, p in online.items() if p.grad is not None and p.grad.abs().sum() > 0]
    assert "encoder.blocks.0.attn.qkv.weight" in with_grad
    assert any(p.grad is not None for p in objective.predictor.parameters())


def test_jepa_target_is_a_separate_copy():
    objective, _, _ = jepa_setup()
    online = dict(objective.online.named_parameters())
    for name, p in objective.target.named_parameters():
        assert torch.equal(p, online[name])
        assert p.data_ptr() != online[name].data_ptr()


def test_jepa_targets_are_deterministic_while_the_context_encoder_drops_out():
    objective, batch, _ = jepa_setup(encoder={"dropout": 0.5, "drop_path": 0.5})
    objective.train()
    assert objective.online.training and objective.predictor.training
    assert not objective.target.training
    seen = capture_loss_inputs(objective)
    torch.manual_seed(1)
    objective(batch)
    torch.manual_seed(2)
    objective(batch)
    (pred_a, targets_a), (pred_b, targets_b) = seen
    assert torch.equal(targets_a, targets_b)  # no dropout / drop-path in the target
    assert not torch.allclose(pred_a, pred_b)  # ... but in the context encoder
    objective.eval()
    assert not objective.online.training


@pytest.mark.parametrize("reg_tokens,pos_every_layer", [(0, False), (2, False), (1, True)])
def test_transformer_keep_encodes_only_the_kept_tokens(reg_tokens, pos_every_layer):
    torch.manual_seed(0)
    enc = TransformerEncoder(16, depth=2, num_heads=2, reg_tokens=reg_tokens,
                             pos_every_layer=pos_every_layer).eval()
    x, pos = torch.randn(3, 9, 16), torch.randn(9, 16)
    keep = torch.tensor([[0, 2, 5], [1, 3, 8], [4, 6, 7]])
    out = enc(Tokens(x, pos), keep=keep)
    assert out.shape == (3, reg_tokens + 3, 16)
    # same as encoding a sequence made of the kept tokens (with their positions) only
    sub = Tokens(gather_tokens(x, keep), gather_tokens(pos.expand(3, -1, -1), keep))
    torch.testing.assert_close(out, enc(sub), rtol=1e-5, atol=1e-6)
    # independent of the values of the dropped tokens
    dropped = torch.ones(3, 9, dtype=torch.bool).scatter(1, keep, False)
    x2 = torch.where(dropped[..., None], torch.randn_like(x) * 100, x)
    assert torch.equal(enc(Tokens(x2, pos), keep=keep), out)


def test_transformer_padding_is_invisible():
    torch.manual_seed(0)
    enc = TransformerEncoder(16, depth=2, num_heads=2, reg_tokens=1).eval()
    x, pos = torch.randn(2, 6, 16), torch.randn(6, 16)
    pad = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    x2 = x.clone()
    x2[pad] = 100 * torch.randn(int(pad.sum()), 16)
    real = torch.cat([torch.zeros(2, 1, dtype=torch.bool), pad], 1).logical_not()
    assert torch.equal(enc(Tokens(x, pos, pad))[real], enc(Tokens(x2, pos, pad))[real])
    keep = torch.tensor([[0, 1, 4], [2, 3, 5]])  # kept padding stays padding
    a, b = enc(Tokens(x, pos, pad), keep=keep), enc(Tokens(x2, pos, pad), keep=keep)
    assert torch.equal(a[:, :3], b[:, :3])


def test_jepa_context_encoder_sees_only_context_values():
    """The loss depends on a token's *value* only through the context encoder (the target encoder
    runs without grad and the predictor sees positions only), so the input gradient vanishes on
    every numeric feature outside the context, per sample."""
    objective, batch, meta = jepa_setup()
    num = batch.x["num"].clone().requires_grad_(True)
    loss, _ = objective(Batch(x={"num": num, "cat": batch.x["cat"]}, y=batch.y, masks=batch.masks))
    loss.backward()
    f_num = meta["num_numeric"]
    in_context = torch.zeros(B, meta["num_tokens"], dtype=torch.bool)
    in_context.scatter_(1, batch.masks.context, True)
    in_context = in_context[:, :f_num]  # numeric tokens come first
    assert (num.grad[~in_context] == 0).all()
    assert (num.grad[in_context] != 0).all()
    assert in_context.any() and (~in_context).any()


def test_jepa_predictor_output_shape_and_targets():
    objective, batch, _ = jepa_setup()
    seen = capture_loss_inputs(objective)
    objective(batch)
    (pred, targets), = seen
    b, m, nt = batch.masks.target.shape
    assert pred.shape == targets.shape == (b, m, nt, 16)
    # direct call of the predictor
    pred2 = JEPAPredictor(16, dim=8, depth=1, num_heads=2)(
        torch.randn(2, 5, 16), torch.randn(2, 5, 16), torch.randn(2, 3, 4, 16))
    assert pred2.shape == (2, 3, 4, 16)


def test_jepa_register_tokens_are_prefixed_and_never_targets():
    r = 2
    objective, batch, meta = jepa_setup(encoder={"reg_tokens": r})
    n = meta["num_tokens"]
    objective.eval()
    h = objective.target(batch.x)
    assert h.shape == (B, r + n, 16)
    z = objective.online(batch.x, keep=batch.masks.context)
    assert z.shape == (B, r + batch.masks.context.shape[1], 16)
    assert objective.predictor.num_prefix_tokens == r
    seen = capture_loss_inputs(objective)
    objective(batch)
    (_, targets), = seen
    b, m, nt = batch.masks.target.shape
    body = F.layer_norm(h[:, r:], h.shape[-1:])
    expected = gather_tokens(body, batch.masks.target.reshape(b, m * nt)).view(b, m, nt, -1)
    assert torch.equal(targets, expected)
    # the register latents are not among the targets
    regs = F.layer_norm(h[:, :r], h.shape[-1:])
    for i in range(r):
        assert not (targets - regs[:, i, None, None]).abs().sum(-1).eq(0).any()


def test_jepa_loss_decreases(tmp_path):
    raw = tiny_recipe(train={"max_steps": 30})
    Trainer(build(raw), tmp_path).fit()
    losses = [row["loss"] for row in read_metrics(tmp_path)]
    assert len(losses) == 30 and all(map(torch.isfinite, torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.9 * first, losses


def test_jepa_update_target_is_ema():
    objective, _, _ = jepa_setup()
    with torch.no_grad():
        for p in objective.online.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in objective.target.state_dict().items()}
    online = objective.online.state_dict()
    objective.update_target(0.9)
    after = objective.target.state_dict()
    for k, v in before.items():
        if v.is_floating_point():
            assert torch.equal(after[k], torch.lerp(v, online[k], 0.1)), k


def test_jepa_with_vcreg_regularizer():
    raw = tiny_recipe(regularizers=[{"name": "vcreg", "std_weight": 2.0, "cov_weight": 0.5}])
    recipe = build(raw)
    train, _, meta = load_datasets(recipe)
    objective = build_objective(recipe, meta)
    batch = Collate(build_masker(recipe, meta))([(train[i], 5, 0) for i in range(B)])
    seen = []
    objective.regularizers[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    loss, logs = objective(batch)
    assert set(logs) == {"loss_pred", "vcreg_std", "vcreg_cov"}
    (z,) = seen
    assert z.shape == (B, 16)  # mean-pooled context latents
    std = torch.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()
    zc = z - z.mean(0)
    cov = zc.T @ zc / (B - 1)
    off = (cov - torch.diag(torch.diagonal(cov))).pow(2).sum() / 16
    torch.testing.assert_close(logs["vcreg_std"], std.detach())
    torch.testing.assert_close(logs["vcreg_cov"], off.detach())
    torch.testing.assert_close(loss, logs["loss_pred"] + 2.0 * std + 0.5 * off)


# ------------------------------------------------------------------------------------ BYOL


def byol_setup(seed: int = 0):
    recipe = build(tiny_recipe())
    train, _, meta = load_datasets(recipe)
    torch.manual_seed(seed)
    backbone = Backbone(FeatureTokenizer(meta["num_numeric"], meta["cardinalities"], dim=16),
                        TransformerEncoder(16, depth=1, num_heads=2))
    objective = BYOL(backbone, MLPHead(16, 32, 8), MLPHead(8, 32, 8))
    x, y = default_collate([train[i] for i in range(B)])
    g = torch.Generator().manual_seed(seed)
    views = [{"num": x["num"] + 0.5 * torch.randn(x["num"].shape, generator=g), "cat": x["cat"]}
             for _ in range(2)]
    return objective, Batch(x=x, y=y, views=views)


def test_byol_needs_two_views():
    objective, batch = byol_setup()
    with pytest.raises(ValueError, match="two augmented views"):
        objective(Batch(x=batch.x, y=batch.y, views=batch.views[:1]))


def test_byol_loss_is_symmetric_and_matches_reference():
    objective, batch = byol_setup()
    loss, logs = objective(batch)
    swapped, _ = objective(Batch(x=batch.x, y=batch.y, views=batch.views[::-1]))
    torch.testing.assert_close(loss, swapped, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logs["loss_byol"], loss.detach())

    with torch.no_grad():
        def online(v):
            return objective.predictor(objective.projector(pool(objective.online(v), "mean")))

        def target(v):
            return objective.target_projector(pool(objective.target(v), "mean"))

        v1, v2 = batch.views
        p1, p2, z1, z2 = online(v1), online(v2), target(v1), target(v2)

        def ref(p, z):
            cos = (p * z).sum(-1) / (p.norm(dim=-1) * z.norm(dim=-1))
            return (2 - 2 * cos).mean()

        expected = ref(p1, z2) + ref(p2, z1)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    assert 0 <= loss.detach().item() <= 8
    # pooled target embeddings of view 1 are kept for the collapse monitors
    assert objective.monitor_embeddings.shape == (B, 16)


def test_byol_target_gets_no_grad():
    objective, batch = byol_setup()
    loss, _ = objective(batch)
    loss.backward()
    frozen = [*objective.target.parameters(), *objective.target_projector.parameters()]
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    for module in (objective.online, objective.projector, objective.predictor):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_byol_update_target_moves_by_one_minus_momentum():
    objective, batch = byol_setup()
    opt = torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=0.5)
    loss, _ = objective(batch)
    loss.backward()
    opt.step()
    pairs = [(objective.target, objective.online),
             (objective.target_projector, objective.projector)]
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t, _ in pairs]
    m = 0.75
    objective.update_target(m)
    for (target, online), old in zip(pairs, before, strict=True):
        new, src = target.state_dict(), online.state_dict()
        moved = 0
        for k, v in old.items():
            if v.is_floating_point():
                torch.testing.assert_close(new[k], v + (1 - m) * (src[k] - v), rtol=1e-6, atol=1e-7)
                moved += not torch.equal(new[k], v)
            else:  # BatchNorm's num_batches_tracked is copied
                assert torch.equal(new[k], src[k])
        assert moved > 0
