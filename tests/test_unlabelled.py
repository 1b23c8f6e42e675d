"""Unlabelled pools (`data.unlabelled`, issue 28): in every modality the pool's samples reach
pretraining, read with the preprocessing fitted on the labelled training split, and never the
splits that probes, selection and evaluation use; flat folders, single files, glob patterns and
manifests without labels; the length budget counts them; under DDP too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)
from _pools import CASES

from polyjepa.budget import resolve_budget
from polyjepa.build import assemble, load_recipe
from polyjepa.errors import DataError
from polyjepa.modalities.tabular.readers import synthetic_frame


def _x(sample) -> list[torch.Tensor]:
    x = sample[0]
    return [x[k] for k in sorted(x)] if isinstance(x, dict) else [x]


@pytest.mark.parametrize("recipe", sorted(CASES))
@pytest.mark.filterwarnings("ignore:train.batch_size")
def test_a_pool_reaches_pretraining_and_never_the_labelled_splits(recipe, tmp_path):
    overrides, pool_size = CASES[recipe](tmp_path)
    with_pool = assemble(load_recipe(recipe, overrides))
    without = assemble(load_recipe(recipe, overrides[:-1]))
    train, val, test = (with_pool.splits.train, with_pool.splits.val, with_pool.splits.test)
    # the labelled splits, which probes, selection and evaluation read, are the same samples
    assert (len(train), len(val), len(test)) == (len(without.splits.train),
                                                 len(without.splits.val), len(without.splits.test))
    assert with_pool.splits.meta.keys() == without.splits.meta.keys()
    # pretraining reads the training split, then every pool sample, without labels
    pretraining = with_pool.pretraining
    assert with_pool.unlabelled_samples == pool_size
    assert len(pretraining) == len(train) + pool_size
    assert {pretraining[i][1] for i in range(len(pretraining))} == {-1}
    for a, b in zip(_x(pretraining[0]), _x(train[0]), strict=True):
        assert torch.equal(a, b)
    # a pool sample has the training data's shapes (read with the run's preprocessing) ...
    for a, b in zip(_x(pretraining[len(pretraining) - 1]), _x(train[0]), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    # ... and is no labelled sample
    last = _x(pretraining[len(pretraining) - 1])
    assert not any(all(torch.equal(a, b) for a, b in zip(last, _x(split[i]), strict=True))
                   for split in (train, val, test) for i in range(len(split)))
    # the length counts the pool: the same budget rule over more samples
    cfg = with_pool.recipe.cfg
    assert with_pool.budget == resolve_budget(cfg.train, cfg.optim.warmup_steps, len(pretraining),
                                              with_pool.batch_size)


@pytest.mark.filterwarnings("ignore:train.batch_size")
def test_a_pooled_run_trains_on_the_pool_and_probes_only_the_labelled_rows(tmp_path, capsys):
    """Pool rows carry a marker (every numeric feature at 50 standard deviations): one epoch of
    the loader yields all of them; the online probe's sets and `eval` hold none."""
    from polyjepa.cli import main
    from polyjepa.train import Trainer

    overrides, _ = CASES["my_table"](tmp_path)
    marked = synthetic_frame(40, seed=9).drop(columns=["label"])
    numeric = [c for c in marked.columns if c.startswith("num_")]
    marked[numeric] = 1000.0
    marked.to_csv(tmp_path / "marked.csv", index=False)
    overrides = [*overrides[:-1], f"data.unlabelled={tmp_path / 'marked.csv'}",
                 "train.batch_size=8", "train.probe_every=1", "train.max_epochs=null",
                 "train.max_steps=2", "train.progress=false", "train.keep_checkpoints=[]"]
    trainer = Trainer(load_recipe("my_table", overrides), tmp_path / "t")

    def marked_rows(num: torch.Tensor) -> int:
        return int((num > 20).all(dim=1).sum())

    seen = sum(marked_rows(batch.x["num"]) for batch in trainer.loader)
    assert seen == 40 and trainer.pretraining_samples == 72 + 40
    for probe_set in trainer.probe_sets:
        assert marked_rows(torch.stack([probe_set[i][0]["num"] for i in range(len(probe_set))])) == 0
    assert main(["pretrain", "my_table", *overrides, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "data: 72 training samples (+40 unlabelled, pretraining only), 8 validation, 20 test" in err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (info["train_samples"], info["unlabelled_samples"]) == (72, 40)
    assert main(["eval", str(tmp_path / "run"), "eval.protocols=[linear_probe]", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_train"] == 72  # the labelled rows only


@pytest.mark.parametrize("spec, message", [
    ("nowhere/*.wav", r"data.unlabelled\[0\]: the pattern 'nowhere/\*.wav' matches nothing"),
    ("missing_folder", r"data.unlabelled\[0\]: .*missing_folder"),
])
def test_a_pool_that_is_not_there_is_one_line_naming_the_key(tmp_path, spec, message):
    overrides, _ = CASES["my_audio"](tmp_path)
    with pytest.raises(DataError, match=message):
        assemble(load_recipe("my_audio", [*overrides[:-1], f"data.unlabelled={spec}"]))


def test_a_pool_with_other_columns_names_the_file(tmp_path):
    overrides, _ = CASES["my_table"](tmp_path)
    synthetic_frame(10, seed=3).drop(columns=["num_0"]).to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(DataError, match=r"odd.csv: columns differ .*missing \['num_0'\]"):
        assemble(load_recipe("my_table", [*overrides[:-1], f"data.unlabelled={tmp_path / 'odd.csv'}"]))


def test_two_processes_pretrain_on_a_pool(tmp_path, tiny_recipe):
    """Under torchrun (2 gloo processes) the pool is part of every rank's sampler."""
    synthetic_frame(64, seed=4).drop(columns=["label"]).to_csv(tmp_path / "pool.csv", index=False)
    recipe = str(tiny_recipe({"train": {"max_steps": 2, "batch_size": 16}}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "polyjepa", "pretrain", recipe,
           f"data.unlabelled={tmp_path / 'pool.csv'}", "--out", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["world_size"] == 2 and info["unlabelled_samples"] == 64
    assert info["pretraining_samples"] == info["train_samples"] + 64
