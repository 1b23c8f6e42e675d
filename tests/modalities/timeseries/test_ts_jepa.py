"""TS-JEPA's pieces and runs: the causal encoder, padding-aware pooling, the action-conditioned
latent rollout objective, and the three uses end to end (classification probes, latent
forecasting, the cart-pole control test) on built-in data."""

from __future__ import annotations

import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.build import build_objective, load_datasets, load_recipe
from polyjepa.encoders import Backbone, TransformerEncoder
from polyjepa.errors import ConfigError, DataError
from polyjepa.evaluate import evaluate_run, format_table
from polyjepa.finetune import finetune_run
from polyjepa.modalities.timeseries.tokenizer import PatchTokenizer
from polyjepa.objectives import LatentRollout
from polyjepa.pooling import pool
from polyjepa.predictors import RolloutMLP
from polyjepa.train import pretrain
from polyjepa.types import Batch, Tokens

RUN = ["train.batch_size=16", "train.progress=false", "train.device=cpu", "train.max_steps=3",
       "train.checkpoint_every=1000", "train.monitor_every=1000", "optim.warmup_steps=0",
       "model.tokenizer.dim=24", "model.encoder.depth=1"]
CARTPOLE = ["data.cartpole.train_trajectories=48", "data.cartpole.test_trajectories=16",
            "data.cartpole.steps=40", "data.cartpole.control_episodes=6",
            "data.cartpole.control_steps=60", "data.cartpole.control_every=[1,10]",
            "model.predictor.hidden=32", "objective.horizon=4"]


def series(b: int = 4, c: int = 3, t: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, t, generator=torch.Generator().manual_seed(seed))


def test_causal_encoder_never_reads_later_steps():
    torch.manual_seed(0)
    enc = TransformerEncoder(16, depth=2, num_heads=2, causal_window=5, grid=(5, 3)).eval()
    x, pos = torch.randn(2, 15, 16), torch.randn(15, 16)
    changed = x.clone()
    changed[:, 9:12] = torch.randn(2, 3, 16)  # step 3
    a, b = enc(Tokens(x, pos)), enc(Tokens(changed, pos))
    torch.testing.assert_close(a[:, :9], b[:, :9])  # steps 0-2 see nothing of step 3
    assert not torch.allclose(a[:, 9:], b[:, 9:])
    with pytest.raises(ValueError, match="register tokens"):
        TransformerEncoder(16, depth=1, num_heads=2, causal_window=2, grid=(5, 3), reg_tokens=1)


def test_window_of_one_step_is_each_step_alone_on_either_path():
    torch.manual_seed(0)
    enc = TransformerEncoder(16, depth=2, num_heads=2, causal_window=1, grid=(5, 3)).eval()
    x, pos = torch.randn(2, 15, 16), torch.randn(15, 16)
    fast = enc(Tokens(x, pos))  # steps as a batch of 3-token sequences
    masked = enc(Tokens(x, pos), keep=torch.arange(15).expand(2, -1))  # the attention-mask path
    torch.testing.assert_close(fast, masked, atol=1e-5, rtol=1e-5)
    alone = enc(Tokens(x[:, 6:9], pos[6:9]))  # step 2 encoded by itself
    torch.testing.assert_close(fast[:, 6:9], alone, atol=1e-5, rtol=1e-5)


def test_pooling_leaves_padding_out():
    h = torch.randn(2, 1 + 6, 4)  # one register token
    pad = torch.tensor([[False] * 6, [False, False, False, True, True, True]])
    mean = pool(h, "mean", 1, pad)
    torch.testing.assert_close(mean[1], h[1, :4].mean(0))
    torch.testing.assert_close(mean[0], h[0].mean(0))
    top = pool(h, "mean_max", 1, pad)
    torch.testing.assert_close(top[1, 4:], h[1, 1:4].amax(0))
    flat = pool(h, "flatten", 1, pad).view(2, 7, 4)
    assert flat[1, 4:].abs().sum() == 0 and torch.equal(flat[1, :4], h[1, :4])
    last = pool(h, "last", 1, pad)  # the last real token: what a causal encoder saw all by
    assert torch.equal(last[0], h[0, 6]) and torch.equal(last[1], h[1, 3])
    assert torch.equal(pool(h, "last", 1), h[:, 6])


def rollout_objective(actions: int = 0, horizon: int = 3) -> LatentRollout:
    torch.manual_seed(0)
    tokenizer = PatchTokenizer(channels=3, length=40, dim=16, patch=4, num_actions=actions)
    encoder = TransformerEncoder(16, depth=1, num_heads=2, causal_window=10, grid=(10, 3))
    return LatentRollout(Backbone(tokenizer, encoder), RolloutMLP(16, 4 * actions, hidden=32),
                         horizon=horizon)


def batch(x: torch.Tensor, length: list[int], actions: torch.Tensor | None = None) -> Batch:
    inputs = {"values": x, "length": torch.tensor(length)}
    if actions is not None:
        inputs["actions"] = actions
    return Batch(x=inputs, y=torch.zeros(len(x), dtype=torch.long))


def test_rollout_loss_trains_encoder_and_predictor_and_ignores_padding():
    obj = rollout_objective()
    x = series()
    loss, logs = obj(batch(x, [40, 40, 24, 13]))
    loss.backward()
    assert obj.online.tokenizer.value.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in obj.predictor.parameters())
    assert all(p.grad is None for p in obj.target.parameters())
    changed = x.clone()
    changed[2, :, 24:] = 100.0  # beyond series 2's length
    changed[3, :, 13:] = -100.0
    torch.testing.assert_close(obj(batch(changed, [40, 40, 24, 13]))[0], loss)
    x[0, :, 30:] += 1.0  # a real step of series 0 moves the loss
    assert not torch.allclose(obj(batch(x, [40, 40, 24, 13]))[0], loss)


def test_rollout_reads_the_actions_that_lead_into_each_step():
    obj = rollout_objective(actions=2)
    x, a = series(), series(c=2, seed=1)
    base = obj(batch(x, [40] * 4, a))[0]
    moved = a.clone()
    moved[:, :, 20] += 5.0
    assert not torch.allclose(obj(batch(x, [40] * 4, moved))[0], base)
    with pytest.raises(ValueError, match="action"):
        obj(batch(x, [40] * 4))
    rolled = obj.rollout(torch.randn(4, 2, 16), torch.randn(4, 2, 5, 8), 5)
    assert rolled.shape == (4, 2, 5, 16)


def test_ts_jepa_demo_classifies_and_forecasts_synthetic_series(tmp_path):
    run = pretrain("ts_jepa_demo", ["synthetic=true", *RUN, "model.predictor.hidden=32"],
                   tmp_path / "run")
    result = evaluate_run(run, device="cpu", overrides=["eval.protocols=[linear_probe,knn,forecast]"])
    assert result["knn"]["raw_features"] > 0.5  # 4 classes: chance is 0.25
    table = result["forecast"]["table"]
    assert [row["horizon_steps"] for row in table] == [7, 14, 21]  # 3 patches of 7 steps
    assert all(row["naive_mse"] > 0 and row["linear_ar_mse"] > 0 for row in table)
    assert table[-1]["naive_mse"] > table[0]["naive_mse"]  # holding gets worse with the horizon
    assert "forecast:" in format_table(result)
    with pytest.raises(ConfigError, match="per-series statistics"):  # they see the future
        evaluate_run(run, device="cpu", overrides=["eval.protocols=[forecast]",
                                                   "data.standardize=per_series"])


def test_ts_jepa_masked_pretrains_evaluates_and_finetunes_with_padding(tmp_path):
    run = pretrain("ts_jepa_masked", ["synthetic=true", *RUN, "model.predictor.dim=24",
                                      "model.predictor.depth=1"], tmp_path / "run")
    result = evaluate_run(run, device="cpu")
    assert set(result["knn"]) == {"pretrained", "random_init", "raw_features", "minirocket"}
    tuned = finetune_run(run, device="cpu", overrides=["finetune.max_steps=2",
                                                      "finetune.batch_size=16"])
    assert 0.0 <= tuned["finetune"] <= 1.0


def test_cartpole_run_forecasts_and_controls(tmp_path):
    run = pretrain("ts_jepa", [*RUN, *CARTPOLE], tmp_path / "run")
    result = evaluate_run(run, device="cpu")
    forecast = result["forecast"]["table"]
    assert len(forecast) == 4 and forecast[0]["horizon_steps"] == 1
    control = result["control"]["table"]
    assert [row["every"] for row in control] == [1, 10]
    assert all(row["full_observation_success"] == 1.0 for row in control)
    assert all(0 <= row["ts_jepa_success"] <= 1 for row in control)
    assert control[1]["hold_last_stable_steps"] <= 60
    with pytest.raises(DataError, match="needs labels"):
        evaluate_run(run, device="cpu", overrides=["eval.protocols=[linear_probe]"])


def test_recipes_say_what_the_papers_say():
    rollout = load_recipe("ts_jepa", [*CARTPOLE]).cfg
    assert rollout.objective["name"] == "latent_rollout" and rollout.objective["loss"] == "cosine"
    assert rollout.objective["horizon"] == 4  # overridden; the recipe's is TS-JEPA's 15
    assert load_recipe("ts_jepa").cfg.objective["horizon"] == 15
    assert (rollout.ema.start, rollout.ema.schedule) == (0.99, "constant")
    assert rollout.model.predictor["name"] == "rollout_mlp"
    masked = load_recipe("ts_jepa_masked").cfg
    assert masked.masker == {"name": "timeseries.masks", "mode": "random", "mask_ratio": 0.7}
    assert (masked.ema.start, masked.objective["loss"]) == (0.998, "l1")
    recipe = load_recipe("ts_jepa", [*CARTPOLE])
    _, _, meta = load_datasets(recipe)
    assert meta["num_actions"] == 1 and meta["channel_names"] == ["x", "x_dot", "theta", "theta_dot"]
    obj = build_objective(recipe, meta)
    assert obj.predictor.action_dim == 1


def write_ts(path, rows: list[tuple[list[list[float]], str | None]]) -> None:
    labelled = rows[0][1] is not None
    header = ["@problemName t", "@univariate false", "@dimensions 2", "@equalLength false",
              "@classLabel true a b" if labelled else "@classLabel false", "@data"]
    lines = [":".join(",".join(str(v) for v in ch) for ch in channels) + (f":{label}" if label else "")
             for channels, label in rows]
    path.write_text("\n".join(header + lines) + "\n")


def test_bad_inputs_through_the_recipe(tmp_path):
    rng = torch.Generator().manual_seed(0)
    rows = [([torch.randn(12, generator=rng).tolist(), torch.randn(12, generator=rng).tolist()],
             "ab"[i % 2]) for i in range(24)]
    write_ts(tmp_path / "x_TRAIN.ts", rows)
    write_ts(tmp_path / "x_TEST.ts", [(channels, None) for channels, _ in rows[:8]])
    overrides = [f"data.path={tmp_path / 'x_TRAIN.ts'}", *RUN, "model.predictor.hidden=16",
                 "model.tokenizer.num_patches=4"]
    with pytest.raises(ConfigError, match="model.tokenizer.*shorter than one patch"):  # 12 < 20
        pretrain("ts_jepa_demo", [*overrides, "model.tokenizer.num_patches=null",
                                  "model.tokenizer.patch=20"], tmp_path / "bad")
    run = pretrain("ts_jepa_demo", overrides, tmp_path / "run")  # an unlabelled test file trains
    with pytest.raises(DataError, match="needs labels"):
        evaluate_run(run, device="cpu", overrides=["eval.protocols=[linear_probe]"])


def test_action_columns_of_a_long_table_feed_the_predictor(tmp_path):
    """A long CSV (id, time, two channels, one control column): the control column becomes the
    action the rollout is conditioned on, not an encoded channel."""
    rng = torch.Generator().manual_seed(0)
    rows = ["id,time,a,b,u"]
    for series_id in range(24):
        for t in range(20):
            a, b, u = torch.randn(3, generator=rng).tolist()
            rows.append(f"s{series_id},{t},{a:.4f},{b:.4f},{u:.4f}")
    (tmp_path / "plant.csv").write_text("\n".join(rows) + "\n")
    overrides = [f"data.path={tmp_path / 'plant.csv'}", "data.action_columns=[u]",
                 "data.label_column=null", "data.window=null", "data.window_stride=null",
                 "model.tokenizer.patch=2", *RUN, "model.predictor.hidden=16", "objective.horizon=3",
                 "eval.protocols=[forecast]"]
    recipe = load_recipe("ts_jepa", overrides)
    _, _, meta = load_datasets(recipe)
    assert (meta["channels"], meta["num_actions"], meta["channel_names"]) == (2, 1, ["a", "b"])
    assert build_objective(recipe, meta).predictor.action_dim == 2  # one action x 2 steps a patch
    run = pretrain("ts_jepa", overrides, tmp_path / "run")
    table = evaluate_run(run, device="cpu")["forecast"]["table"]
    assert [row["horizon_steps"] for row in table] == [2, 4, 6]


def test_rollout_refuses_what_would_let_embeddings_see_the_future():
    tokenizer = PatchTokenizer(channels=3, length=40, dim=16, patch=4)
    causal = TransformerEncoder(16, depth=1, num_heads=2, causal_window=10, grid=(10, 3))
    with pytest.raises(ValueError, match="causal encoder"):
        LatentRollout(Backbone(tokenizer, TransformerEncoder(16, depth=1, num_heads=2)),
                      RolloutMLP(16, hidden=8))
    with pytest.raises(ValueError, match="RevIN"):
        LatentRollout(Backbone(PatchTokenizer(3, 40, dim=16, patch=4, revin=True), causal),
                      RolloutMLP(16, hidden=8))
    with pytest.raises(ValueError, match="at least 2 time steps"):
        LatentRollout(Backbone(PatchTokenizer(3, 40, dim=16, patch=40),
                               TransformerEncoder(16, depth=1, num_heads=2, causal_window=1,
                                                  grid=(1, 3))), RolloutMLP(16, hidden=8))


def test_last_pooling_reads_the_last_real_step_of_channel_tokens():
    h = torch.randn(2, 12, 4)  # 4 steps x 3 channel tokens
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1, 6:] = True  # series 1 has 2 real steps
    last = pool(h, "last", 0, pad, step_tokens=3)
    torch.testing.assert_close(last[0], h[0, 9:12].mean(0))
    torch.testing.assert_close(last[1], h[1, 3:6].mean(0))


def test_padded_queries_of_a_causal_encoder_stay_finite():
    """With a short window a padding token may see only padding keys; it always sees itself,
    so no attention row is empty (older torch kernels return NaN for empty rows)."""
    enc = TransformerEncoder(16, depth=1, num_heads=2, causal_window=2, grid=(6, 2)).eval()
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1, 4:] = True
    tokens = Tokens(torch.randn(2, 12, 16), torch.randn(12, 16), pad)
    mask = enc.step_mask(12, torch.device("cpu")) & ~pad[:, None, None, :]
    assert not (mask | torch.eye(12, dtype=torch.bool)).logical_not().all(-1).any()
    assert torch.isfinite(enc(tokens)).all()
    single = TransformerEncoder(16, depth=1, num_heads=2, causal_window=1, grid=(6, 2)).eval()
    assert torch.isfinite(single(tokens)).all()


def test_regression_ts_files_pretrain_without_classes(tmp_path):
    from polyjepa.modalities.timeseries import load_data
    from polyjepa.modalities.timeseries.config import TimeSeriesDataConfig

    rows = "\n".join(",".join(str(float(v)) for v in range(i, i + 12)) + f":{i / 10}" for i in range(8))
    for split in ("TRAIN", "TEST"):
        (tmp_path / f"r_{split}.ts").write_text(f"@targetLabel true\n@data\n{rows}\n")
    train, test, meta = load_data(TimeSeriesDataConfig(path=str(tmp_path / "r_TRAIN.ts")), None)
    # declared targets are regression targets, however few distinct values they take
    assert meta["class_names"] == [] and meta["task"] == "regression" and len(test) == 8
    assert train.labels.dtype == torch.float32
    assert train.labels.tolist() == pytest.approx([i / 10 for i in range(8)])
