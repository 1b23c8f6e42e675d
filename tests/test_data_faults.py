"""Samples that fail to load in the middle of training: named (raise) or skipped and counted."""

from __future__ import annotations

import json

import pytest
from _helpers import logged

from polyjepa.errors import DataError
from polyjepa.modalities.tabular.readers import TabularDataset
from polyjepa.train import pretrain

BAD = 37  # a sample index reached in the first epoch


@pytest.fixture
def broken_sample(monkeypatch):
    """Sample BAD raises like a truncated file would (in the main process and in workers)."""
    original = TabularDataset.__getitem__

    def getitem(self, i):
        if i == BAD:
            raise DataError("clip_037.wav: truncated file (expected 16000 frames, got 0)")
        return original(self, i)

    monkeypatch.setattr(TabularDataset, "__getitem__", getitem)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_sample_names_the_sample_and_file(broken_sample, tiny_recipe, tmp_path, workers):
    recipe = tiny_recipe({"train": {"max_steps": 60, "num_workers": workers}})
    with pytest.raises(Exception, match=f"training sample {BAD} failed to load: clip_037.wav"):
        pretrain(recipe, [], tmp_path / "run")


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_counts_failed_samples_in_metrics_and_summary(broken_sample, tiny_recipe, tmp_path,
                                                           workers, caplog):
    recipe = tiny_recipe({"train": {"max_steps": 50, "num_workers": workers, "log_every": 50}})
    with logged(caplog, "1 training samples failed to load and were skipped"):
        run = pretrain(recipe, ["data.on_error=skip"], tmp_path / "run")
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["skipped_samples"] == 1  # 50 steps of 32 = one epoch of the 1600 synthetic rows
    assert (run / "encoder.pt").exists()


def test_unknown_on_error_policy_is_a_config_error(tiny_recipe, tmp_path):
    with pytest.raises(Exception, match="data.on_error must be 'raise' or 'skip'"):
        pretrain(tiny_recipe(), ["data.on_error=ignore"], tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_bug_in_a_dataset_is_not_skipped_nor_relabelled(monkeypatch, tiny_recipe, tmp_path):
    """`data.on_error=skip` skips bad data, not bad code: an IndexError stops the run as itself."""
    original = TabularDataset.__getitem__

    def getitem(self, i):
        if i == BAD:
            return [][1]  # IndexError: a programming error
        return original(self, i)

    monkeypatch.setattr(TabularDataset, "__getitem__", getitem)
    recipe = tiny_recipe({"train": {"max_steps": 50}})
    for policy in ("skip", "raise"):
        with pytest.raises(IndexError, match="list index out of range"):
            pretrain(recipe, [f"data.on_error={policy}"], tmp_path / policy)
