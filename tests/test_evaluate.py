"""Frozen-encoder evaluation: probes, pooling, `evaluate_run`, and `load_encoder`."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from _helpers import build, single_thread, tiny_recipe, write_recipe  # noqa: F401

from polyjepa import evaluate as E
from polyjepa.build import build_backbone, load_datasets
from polyjepa.checkpoint import load_file
from polyjepa.data import eval_collate
from polyjepa.encoders import Backbone, TransformerEncoder
from polyjepa.errors import CheckpointError, ConfigError, ContractError, MissingExtraError
from polyjepa.evaluate import evaluate_run, format_table, knn_probe, linear_probe
from polyjepa.hub import load_encoder
from polyjepa.modalities.tabular.tokenizer import FeatureTokenizer
from polyjepa.pooling import POOLINGS, pool, pooled_dim
from polyjepa.registry import get_modality
from polyjepa.train import CHECKPOINT, pretrain

# ------------------------------------------------------------------------------ probes


def blobs(n: int, separation: float, seed: int, shuffle_labels: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8)) + separation * y[:, None] * (np.arange(8) < 2)
    if shuffle_labels:
        y = rng.permutation(y)
    return x.astype(np.float32), y


@pytest.mark.parametrize("probe", [linear_probe, knn_probe])
def test_probe_separable_vs_shuffled(probe):
    x_tr, y_tr = blobs(400, 6.0, seed=0)
    x_te, y_te = blobs(400, 6.0, seed=1)
    assert probe(x_tr, y_tr, x_te, y_te) > 0.97
    xs_tr, ys_tr = blobs(400, 6.0, seed=0, shuffle_labels=True)
    xs_te, ys_te = blobs(400, 6.0, seed=1, shuffle_labels=True)
    assert 0.38 < probe(xs_tr, ys_tr, xs_te, ys_te) < 0.62


def test_knn_probe_with_k_larger_than_train_set():
    x, y = blobs(12, 6.0, seed=0)
    assert knn_probe(x, y, x, y, k=50) == 1.0  # distance-weighted: each point is its own vote


def test_probes_are_deterministic():
    x_tr, y_tr = blobs(200, 1.0, seed=0)
    x_te, y_te = blobs(200, 1.0, seed=1)
    assert linear_probe(x_tr, y_tr, x_te, y_te) == linear_probe(x_tr, y_tr, x_te, y_te)


def multiclass(n: int, classes: int, separation: float, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes)
    centres = np.eye(classes, 8) * separation
    return (centres[y] + rng.normal(size=(n, 8))).astype(np.float32), y


def test_svm_probe_picks_c_by_cross_validation_on_the_training_split():
    x_tr, y_tr = blobs(300, 3.0, seed=0)
    x_te, y_te = blobs(300, 3.0, seed=1)
    acc, c = E.svm_probe(x_tr, y_tr, x_te, y_te, [1e-4, 0.01, 1.0])
    assert acc > 0.9 and c in (0.01, 1.0)  # C = 1e-4 underfits standardised blobs
    acc_small, _ = E.svm_probe(x_tr, y_tr, x_te, y_te, [1e-4])
    assert acc_small < acc  # the grid mattered
    # the test split plays no part in choosing C
    _, c_again = E.svm_probe(x_tr, y_tr, x_te, 1 - y_te, [1e-4, 0.01, 1.0])
    assert c_again == c
    xs, ys = blobs(300, 3.0, seed=0, shuffle_labels=True)
    assert E.svm_probe(xs, ys, x_te, y_te, [0.01, 1.0])[0] < 0.65


def test_few_shot_episodes_are_n_way_k_shot_and_seeded():
    x_tr, y_tr = multiclass(400, 8, 4.0, seed=0)
    x_te, y_te = multiclass(400, 8, 4.0, seed=1)
    mean, std = E.few_shot(x_tr, y_tr, x_te, y_te, ways=5, shots=10, queries=20, episodes=6, c=1.0)
    assert mean > 0.9 and 0 <= std < 0.1
    assert (mean, std) == E.few_shot(x_tr, y_tr, x_te, y_te, 5, 10, 20, 6, 1.0)
    assert (mean, std) != E.few_shot(x_tr, y_tr, x_te, y_te, 5, 10, 20, 6, 1.0, seed=1)
    xs, ys = multiclass(400, 8, 0.0, seed=0)  # no signal: chance is 1 / ways
    assert E.few_shot(xs, ys, x_te, y_te, 4, 10, 20, 10, 1.0)[0] < 0.45
    # asking for more than the data holds shrinks the episodes, with a warning
    with pytest.warns(UserWarning, match="9-way 10-shot: the data has 8 classes with test "
                                         "samples, and 8 of them.*8-way 10-shot"):
        assert E.few_shot(x_tr, y_tr, x_te, y_te, ways=9, shots=10, queries=5, episodes=2,
                          c=1.0) == E.few_shot(x_tr, y_tr, x_te, y_te, 8, 10, 5, 2, 1.0)
    with pytest.warns(UserWarning, match="5-way 200-shot.*5-way 50-shot"):  # 50 per class
        E.few_shot(x_tr, y_tr, x_te, y_te, ways=5, shots=200, queries=5, episodes=2, c=1.0)
    with pytest.raises(E.DataError, match="need two"):
        E.few_shot(x_tr, np.zeros_like(y_tr), x_te, np.zeros_like(y_te), 5, 2, 5, 2, 1.0)


def test_run_protocols_reports_every_protocol_for_every_encoder():
    (x_tr, y_tr), (x_te, y_te) = multiclass(200, 5, 4.0, seed=0), multiclass(100, 5, 4.0, seed=1)
    noise = np.random.default_rng(2).normal(size=(300, 8)).astype(np.float32)
    features = {"pretrained": [(x_tr, x_te)],
                "random_init": [(x_tr, x_te), (noise[:200], noise[200:])],  # two initialisations
                "raw_features": [(x_tr, x_te)]}
    cfg = E.C.EvalConfig(protocols=["svm", "few_shot"], few_shot_shots=[5], few_shot_episodes=3)
    result = E.run_protocols(features, y_tr, y_te, cfg, classes=5)
    assert set(result) == {"svm", "svm_c", "few_shot", "random_init_each"}
    assert set(result["few_shot"]) == {"5way_5shot"}
    assert set(result["few_shot"]["5way_5shot"]) == set(E.ENCODERS)
    assert result["svm"]["pretrained"] > 0.9 and result["svm"]["raw_features"] > 0.9
    # random init reports the mean of its initialisations, and each one
    good, chance = result["random_init_each"]["svm"]
    assert good > 0.9 and chance < 0.5
    assert result["svm"]["random_init"] == pytest.approx((good + chance) / 2)
    with pytest.raises(E.ConfigError, match="eval.protocols"):
        E.run_protocols(features, y_tr, y_te, E.C.EvalConfig(protocols=["svn"]), classes=5)
    table = format_table({**result, "n_train": 200, "n_test": 100})
    assert "svm" in table and "few-shot 5way_5shot" in table


def test_the_full_label_budget_gives_the_linear_probe_without_fitting_it_again():
    (x_tr, y_tr), (x_te, y_te) = multiclass(150, 3, 1.0, seed=0), multiclass(90, 3, 1.0, seed=1)
    noise = np.random.default_rng(2).normal(size=(240, 8)).astype(np.float32)
    features = {"pretrained": [(x_tr, x_te)],
                "random_init": [(noise[:150], noise[150:]), (x_tr[:, ::-1], x_te[:, ::-1])],
                "raw_features": [(x_tr[:, :4], x_te[:, :4])]}
    rows = E.LE.label_efficiency(features, y_tr, y_te, [2], [0.5, 1.0], 3, seed=0)
    known = E.all_labels_probe(rows)
    for name, pairs in features.items():
        assert known[name] == pytest.approx(
            [linear_probe(a, y_tr, b, y_te) for a, b in pairs], abs=1e-12), name
    assert E.all_labels_probe(rows[:2]) is None  # no budget of every label
    cfg = E.C.EvalConfig(protocols=["linear_probe"])
    reused = E.run_protocols(features, y_tr, y_te, cfg, 3, linear=known)
    assert reused == E.run_protocols(features, y_tr, y_te, cfg, 3)


# ------------------------------------------------------------------------------ pooling


def _backbone(reg_tokens: int) -> Backbone:
    return Backbone(FeatureTokenizer(3, [4, 2], dim=8),
                    TransformerEncoder(8, depth=1, num_heads=2, reg_tokens=reg_tokens)).eval()


@pytest.mark.parametrize(
    "mode,reg_tokens",
    # prefix without registers: test_prefix_pooling_without_registers_*
    [(m, r) for m in POOLINGS for r in (0, 2) if (m, r) != ("prefix", 0)],
)
def test_pool_shapes_agree_with_pooled_dim(mode, reg_tokens):
    backbone = _backbone(reg_tokens)
    x = {"num": torch.randn(5, 3), "cat": torch.randint(0, 2, (5, 2))}
    h = backbone(x)
    assert h.shape == (5, reg_tokens + 5, 8)
    out = pool(h, mode, reg_tokens)
    expected = {"mean": 8, "flatten": (reg_tokens + 5) * 8, "prefix": reg_tokens * 8,
                "mean_max": 16, "mean_plus_max": 8, "last": 8}[mode]
    assert out.shape == (5, expected)
    assert pooled_dim(backbone, mode, {"num_tokens": 5}) == expected


def test_pool_values():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)  # R=1 register + N=3
    torch.testing.assert_close(pool(h, "mean", 1), h.mean(1))
    assert torch.equal(pool(h, "flatten", 1), h.reshape(2, 12))
    assert torch.equal(pool(h, "prefix", 1), h[:, 0])
    body = h[:, 1:]
    assert torch.equal(pool(h, "mean_max", 1), torch.cat([body.mean(1), body.amax(1)], 1))
    assert torch.equal(pool(h, "mean_plus_max", 1), body.mean(1) + body.amax(1))
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool(h, "max")
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pooled_dim(_backbone(0), "max", {"num_tokens": 5})


def test_prefix_pooling_without_registers_raises():
    with pytest.raises(ValueError, match="reg_tokens > 0"):
        pool(torch.randn(2, 5, 8), "prefix", 0)


def test_prefix_pooling_without_registers_pooled_dim_raises_too():
    with pytest.raises(ValueError, match="reg_tokens"):
        pooled_dim(_backbone(0), "prefix", {"num_tokens": 5})


# ------------------------------------------------------------------------------ evaluate_run

DATASETS = {
    "synthetic": dict(synthetic=True, encoder={"reg_tokens": 1}, eval={"pooling": "flatten"}),
    "breast_cancer": dict(synthetic=False, encoder={},
                          data={"path": "sklearn:breast_cancer", "test_path": None},
                          eval={"pooling": "mean"}),
}


_RUNS: dict = {}


def _trained(name: str, tmp_path_factory):
    """A 3-step run on dataset `name`, trained once per session."""
    if name not in _RUNS:
        spec = dict(DATASETS[name])
        encoder = spec.pop("encoder")
        raw = tiny_recipe(train={"max_steps": 3}, encoder=encoder, **spec)
        directory = tmp_path_factory.mktemp(name)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the function-scoped `single_thread` is not active yet
        try:
            _RUNS[name] = pretrain(write_recipe(raw, directory), [], directory / "run")
        finally:
            torch.set_num_threads(threads)
    return _RUNS[name]


@pytest.fixture(scope="module", params=list(DATASETS))
def trained_run(request, tmp_path_factory):
    return _trained(request.param, tmp_path_factory)


def test_evaluate_run_contract(trained_run, monkeypatch):
    embedded = []
    real_embed = E.embed

    def embed(backbone, *args, **kwargs):
        out = real_embed(backbone, *args, **kwargs)
        embedded.append((backbone, out))
        return out

    monkeypatch.setattr(E, "embed", embed)
    result = evaluate_run(trained_run, device="cpu", overrides=["eval.init_seeds=2"])
    assert set(result) == {"linear_probe", "knn", "random_init_each", "n_train", "n_test"}
    for probe in ("linear_probe", "knn"):
        assert set(result[probe]) == set(E.ENCODERS)
        assert all(0.0 <= v <= 1.0 for v in result[probe].values())
        each = result["random_init_each"][probe]
        assert len(each) == 2 and result[probe]["random_init"] == pytest.approx(np.mean(each))
    train, test, _ = load_datasets(E.recipe_from_dict(
        E.read_run_config(trained_run), "run"))
    assert result["n_train"] == len(train) and result["n_test"] == len(test)
    # the raw-feature baseline is far above chance on these datasets
    assert result["linear_probe"]["raw_features"] > 0.6
    json.loads(json.dumps(result))  # plain JSON-serialisable values
    table = format_table(result)
    assert "pretrained" in table and f"n_train={len(train)}" in table

    # pretrained (train, test) then each random init (train, test), in eval mode
    assert len(embedded) == 6
    (pre, (pre_x, pre_y)), _, (rnd, (rnd_x, rnd_y)), _, (rnd2, (rnd2_x, _)), _ = embedded
    assert not pre.training and not rnd.training
    assert pre_x.shape == rnd_x.shape and len(pre_x) == len(train)
    assert np.array_equal(pre_y, rnd_y)
    assert not np.allclose(pre_x, rnd_x, atol=1e-3), "random-init baseline equals pretrained"
    assert not np.allclose(rnd_x, rnd2_x, atol=1e-3), "two initialisations are the same network"
    with pytest.raises(ConfigError, match="eval.protocols: empty"):
        evaluate_run(trained_run, device="cpu", overrides=["eval.protocols=[]"])
    with pytest.raises(ConfigError, match="'forecast' is not one of linear_probe"):
        evaluate_run(trained_run, device="cpu", overrides=["eval.protocols=[forecast]"])


def test_load_encoder_is_the_ema_target(trained_run):
    encoder = load_encoder(trained_run)
    assert not encoder.training and all(not m.training for m in encoder.modules())
    assert load_encoder(trained_run / "encoder.pt").state_dict().keys() == encoder.state_dict().keys()

    state = load_file(trained_run / CHECKPOINT)
    recipe = E.recipe_from_dict(state["config"], "ckpt")
    targets = {k[len("target."):]: v for k, v in state["objective"].items()
               if k.startswith("target.")}
    online = {k[len("online."):]: v for k, v in state["objective"].items()
              if k.startswith("online.")}
    assert any(not torch.equal(targets[k], online[k]) for k in targets)  # EMA lags the online net
    reference = build_backbone(recipe, state["meta"])
    reference.load_state_dict(targets)
    reference.eval()

    train = load_datasets(recipe)[0]
    batch = eval_collate([train[i] for i in range(64)])
    with torch.no_grad():
        out = encoder(batch.x)
        assert torch.equal(out, reference(batch.x))
        assert out.shape == (64, encoder.num_prefix_tokens + state["meta"]["num_tokens"], 16)
        reference.load_state_dict(online)
        assert not torch.equal(out, reference(batch.x))


def test_load_encoder_rejects_other_files(tmp_path, trained_run):
    bad = tmp_path / "encoder.pt"
    torch.save({"format": "something-else/9", "state_dict": {}}, bad)
    with pytest.raises(CheckpointError, match="not a polyjepa encoder export"):
        load_encoder(bad)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_encoder(tmp_path / "missing")
    # the training checkpoint is not an encoder export either
    with pytest.raises(CheckpointError, match="not a polyjepa encoder export"):
        load_encoder(trained_run / CHECKPOINT)


def test_evaluate_run_on_another_file(tmp_path_factory):
    run = _trained("breast_cancer", tmp_path_factory)
    result = evaluate_run(run, data_path="sklearn:breast_cancer", device="cpu")
    assert result["n_train"] + result["n_test"] == 569
    assert result["n_test"] == 114  # test_fraction 0.2, rounded up
    for probe in ("linear_probe", "knn"):
        assert all(0.0 <= v <= 1.0 for v in result[probe].values())
    assert result["linear_probe"]["raw_features"] > 0.9
    half = evaluate_run(run, data_path="sklearn:breast_cancer", device="cpu", test_fraction=0.5)
    assert half["n_test"] == 285


def test_target_probes_leave_out_unknown_class_targets():
    (x_tr, y_tr), (x_te, y_te) = multiclass(200, 4, 4.0, seed=0), multiclass(100, 4, 4.0, seed=1)
    features = {name: [(x_tr, x_te)] for name in E.ENCODERS}
    unknown = y_te.copy()
    unknown[:50] = -1  # e.g. a test speaker never heard in training
    rows = E.target_probes(features, {"who": y_tr}, {"who": unknown})
    half = E.target_probes(features, {"who": y_tr}, {"who": y_te})
    assert rows["who"]["metric"] == "accuracy" and rows["who"]["pretrained"] > 0.9
    expected = E.linear_probe(x_tr, y_tr, x_te[50:], y_te[50:])
    assert rows["who"]["pretrained"] == pytest.approx(expected)
    assert half["who"]["pretrained"] == pytest.approx(E.linear_probe(x_tr, y_tr, x_te, y_te))


# ------------------------------------------------------------------------------ modality baselines


def pca_baseline(calls: list):
    """A label-free baseline for the tabular plugin: PCA of the raw features, fitted on the
    rows it is given (recorded in `calls` as `(dataset size, rows, seed)`)."""
    from sklearn.decomposition import PCA

    raw = get_modality("tabular").raw_features

    def fit(dataset, rows, seed):
        calls.append((len(dataset), np.array(rows), seed))
        pca = PCA(4, random_state=seed).fit(raw(dataset).numpy()[rows])
        return lambda data: pca.transform(raw(data).numpy())

    return fit


def test_a_modality_baseline_is_fitted_on_the_training_split_and_probed_beside_raw_features(
        tmp_path_factory, monkeypatch):
    run = _trained("breast_cancer", tmp_path_factory)
    calls: list = []
    monkeypatch.setattr(get_modality("tabular"), "baselines", {"pca": pca_baseline(calls)})
    result = evaluate_run(run, device="cpu", overrides=[
        "data.val_fraction=0.25", "eval.split=val", "eval.protocols=[linear_probe,knn,svm]",
        "eval.init_seeds=1", "eval.svm_c=[1.0]", "eval.seed=3"])
    (size, rows, seed), = calls  # fitted once, on the training part of the 455 training rows
    assert size == 455 and len(rows) == result["n_train"] == 341 and seed == 3
    assert len(np.unique(rows)) == len(rows)
    assert result["baselines"] == ["pca"]
    for probe in ("linear_probe", "knn", "svm"):
        assert list(result[probe]) == [*E.ENCODERS, "pca"]
        assert result[probe]["pca"] > 0.8  # breast cancer's first components separate it
    table = format_table(result)
    assert "\npca " in table and "vs pca: linear_probe" in table


def test_a_baseline_without_its_package_is_skipped_and_one_named_like_an_encoder_refused(
        tmp_path_factory, monkeypatch, caplog):
    run = _trained("breast_cancer", tmp_path_factory)
    tabular = get_modality("tabular")
    quick = ["eval.protocols=[linear_probe]", "eval.init_seeds=1"]
    plain = evaluate_run(run, device="cpu", overrides=quick)
    assert list(plain["linear_probe"]) == list(E.ENCODERS) and "baselines" not in plain

    def missing(dataset, rows, seed):
        raise MissingExtraError("the test baseline needs nothing_here: pip install 'x[y]'")

    monkeypatch.setattr(tabular, "baselines", {"absent": missing})
    with caplog.at_level(logging.WARNING, logger="polyjepa"):
        assert evaluate_run(run, device="cpu", overrides=quick) == plain
    assert [r.getMessage() for r in caplog.records] == [
        "eval: the absent baseline is skipped: the test baseline needs nothing_here: "
        "pip install 'x[y]'"]
    monkeypatch.setattr(tabular, "baselines", {"raw_features": pca_baseline([])})
    with pytest.raises(ContractError, match="'raw_features' is named like one of"):
        evaluate_run(run, device="cpu", overrides=quick)
