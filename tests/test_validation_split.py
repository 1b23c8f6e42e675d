"""The validation split (`data.val_fraction`), the online probe scored on it, encoders kept
along the way (`train.keep_checkpoints`) and `eval --checkpoint`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _helpers import build, single_thread, tiny_recipe, write_recipe  # noqa: F401

from polyjepa import build as B
from polyjepa import train as T
from polyjepa.build import load_splits
from polyjepa.cli import main
from polyjepa.data import DataSplit, carve_validation, dataset_labels
from polyjepa.errors import CheckpointError, ConfigError
from polyjepa.evaluate import evaluate_run
from polyjepa.modalities.tabular.readers import TabularDataset


def test_carve_validation_is_stratified_disjoint_and_seeded():
    recipe = build(tiny_recipe())
    train, _, _ = load_splits(recipe).train, None, None
    rest, val = carve_validation(train, 0.25, seed=0)
    assert len(rest) + len(val) == len(train)
    assert not set(rest.indices) & set(val.indices)
    y = dataset_labels(train)
    share = np.bincount(y) / len(y)
    np.testing.assert_allclose(np.bincount(val.labels) / len(val), share, atol=0.01)
    assert np.array_equal(carve_validation(train, 0.25, seed=0)[1].indices, val.indices)
    assert not np.array_equal(carve_validation(train, 0.25, seed=1)[1].indices, val.indices)
    x, label = val[3]
    parent_x, parent_label = train[int(val.indices[3])]
    assert int(label) == int(parent_label) and all((x[k] == parent_x[k]).all() for k in x)


def test_the_recipe_carves_it_once_for_every_pretraining_seed():
    plain = load_splits(build(tiny_recipe()))
    assert plain.val is None
    a = load_splits(build(tiny_recipe(), ["data.val_fraction=0.2"]))
    b = load_splits(build(tiny_recipe(train={"seed": 0}), ["data.val_fraction=0.2"]))
    assert isinstance(a.train, DataSplit) and len(a.val) == round(0.2 * len(plain.train))
    assert np.array_equal(a.val.indices, b.val.indices)
    assert len(a.test) == len(plain.test)  # the test split is not touched


@pytest.mark.parametrize("override,message", [
    ("data.val_fraction=1.0", "data.val_fraction must lie in"),
    ("train.probe_every=5", "set data.val_fraction"),
    ("eval.split=val", "eval.split=val needs a validation split"),
    ("eval.split=train", "eval.split: unknown value"),
    ("train.keep_checkpoints=[0]", "train.keep_checkpoints"),
    ("eval.draws=0", "eval.draws"),
    ("eval.fractions=[0]", "eval.fractions"),
])
def test_bad_split_keys_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        build(tiny_recipe(), [override])


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory):
    """A 12-step run with a validation split, the online probe every 4 steps and kept encoders;
    its test split raises if anything reads it during training."""
    directory = tmp_path_factory.mktemp("probed")
    raw = tiny_recipe(train={"max_steps": 12, "log_every": 5, "probe_every": 4,
                             "probe_samples": 300, "keep_checkpoints": [4], "keep_every": 10})
    raw["data"] = {"val_fraction": 0.2}
    seen: dict = {}
    real = B.load_splits

    class Untouchable:
        def __len__(self):
            return 400

        def __getitem__(self, i):
            raise AssertionError("training read the test split")

    def spy(recipe):
        splits = real(recipe)
        seen.setdefault("splits", splits)  # the inspected trainer's
        splits.test = Untouchable()
        return splits

    mp = pytest.MonkeyPatch()
    mp.setattr(B, "load_splits", spy)
    try:
        trainer = T.Trainer(build(raw), directory / "inspect")
        seen["probe_sets"] = trainer.probe_sets
        run = T.pretrain(write_recipe(raw, directory), [], directory / "run")
    finally:
        mp.undo()
    return run, seen


def test_online_probe_scores_on_the_validation_split_only(probed_run):
    run, seen = probed_run
    splits, (probe_train, probe_val) = seen["splits"], seen["probe_sets"]
    # the probe's samples are drawn from the training part and the validation split
    assert isinstance(probe_train, DataSplit) and len(probe_train) == 300
    assert set(probe_train.indices) <= set(range(len(splits.train)))
    assert isinstance(probe_val, DataSplit) and probe_val.parent is splits.val  # 300 of 320
    assert not set(splits.train.indices[probe_train.indices]) & set(splits.val.indices)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in rows if "probe/knn" in r]
    assert [r["step"] for r in probed] == [0, 4, 8, 12]  # step 0: the random initialisation
    assert {r["step"] for r in rows} >= {4, 5, 8, 10, 12}  # probe steps are logged too
    for r in probed:
        assert 0.5 < r["probe/linear"] <= 1 and 0.5 < r["probe/knn"] <= 1  # the table is learnable
        assert r["probe/seconds"] > 0


def test_kept_encoders_and_eval_checkpoint(probed_run, capsys):
    run, _ = probed_run
    assert T.kept_steps(run) == [4, 10]
    result = evaluate_run(run, device="cpu", checkpoint=4, overrides=["eval.init_seeds=1"])
    final = evaluate_run(run, device="cpu", overrides=["eval.init_seeds=1"])
    assert result["checkpoint"] == 4
    assert result["linear_probe"]["random_init"] == final["linear_probe"]["random_init"]
    with pytest.raises(CheckpointError, match=r"--checkpoint 7: .* kept steps: 4, 10"):
        evaluate_run(run, device="cpu", checkpoint=7)
    assert main(["eval", str(run), "--checkpoint", "7", "--device", "cpu"]) == 2
    assert "kept steps: 4, 10" in capsys.readouterr().err
    assert main(["eval", str(run), "--checkpoint", "10", "eval.init_seeds=1", "--json",
                 "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == 10
    assert json.loads((run / "eval_step10.json").read_text())["checkpoint"] == 10
    assert not (run / "eval.json").exists()  # the final encoder's evaluation is another file


def test_eval_on_the_validation_split(probed_run, monkeypatch):
    run, seen = probed_run
    calls = []
    real = TabularDataset.raw_features
    monkeypatch.setattr(TabularDataset, "raw_features",
                        lambda self: calls.append(len(self)) or real(self))
    result = evaluate_run(run, device="cpu", overrides=["eval.split=val", "eval.init_seeds=1"])
    assert calls == [len(seen["splits"].train) + len(seen["splits"].val)]  # the parent's, once
    assert result["split"] == "val" and result["n_test"] == len(seen["splits"].val)
    assert result["n_train"] == len(seen["splits"].train)
    with pytest.raises(ConfigError, match="eval.split=val"):
        evaluate_run(run, data_path="sklearn:breast_cancer", device="cpu",
                     overrides=["eval.split=val"])


def test_the_online_probe_does_not_change_training(tmp_path):
    """Probing draws nothing from the global RNG (which drives dropout here): a run with the
    probe ends with the same weights as one without."""
    weights = []
    for every in (None, 2):
        raw = tiny_recipe(train={"max_steps": 6, "probe_every": every, "probe_samples": 50},
                          encoder={"dropout": 0.2})
        raw["data"] = {"val_fraction": 0.2}
        run = T.pretrain(write_recipe(raw, tmp_path), [], tmp_path / f"run{every}")
        weights.append(torch.load(run / "encoder.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_split_reads_through_the_parents_random_crops_and_targets():
    class Crops(torch.utils.data.Dataset):
        labels = np.array([0, 1, 0, 1, 2])

        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.tensor([i, -1]), int(self.labels[i])  # the deterministic view

        def sample(self, i, generator):
            return torch.tensor([i, int(torch.randint(0, 100, (), generator=generator))]), 0

        def probe_targets(self):
            return {"speed": np.arange(5) * 0.5}

    split = DataSplit(Crops(), [4, 1])
    assert [int(split[i][0][0]) for i in range(2)] == [4, 1] and split[0][0][1] == -1
    a = split.sample(0, torch.Generator().manual_seed(3))[0]
    assert int(a[0]) == 4 and int(a[1]) >= 0  # the parent's random crop of sample 4
    assert split.labels.tolist() == [2, 1]
    np.testing.assert_array_equal(split.probe_targets()["speed"], [2.0, 0.5])
