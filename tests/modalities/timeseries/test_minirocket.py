"""MiniRocket (aeon), the time-series plugin's label-free baseline: fitted on the training rows
only, seeded, padded for short series, skipped with one line without aeon, and scored by
`polyjepa eval` beside the raw values in every table."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch
from _helpers import SHORT_DEMO_RUN, single_thread  # noqa: F401  (autouse fixture)

from polyjepa import label_efficiency as LE
from polyjepa.cli import main
from polyjepa.errors import MissingExtraError
from polyjepa.evaluate import baseline_features, evaluate_run
from polyjepa.modalities.timeseries import plugin, raw_features, synthetic
from polyjepa.modalities.timeseries.baselines import minirocket
from polyjepa.modalities.timeseries.preprocess import SeriesArrays
from polyjepa.report import write_report
from polyjepa.train import pretrain

AEON = "aeon.transformations.collection.convolution_based"
FEATURES = 9996  # 10,000 kernels rounded down to a multiple of MiniRocket's 84
RUN = [*SHORT_DEMO_RUN, "train.max_steps=3", "train.batch_size=16", "train.device=cpu",
       "model.tokenizer.dim=24", "model.encoder.depth=1", "model.predictor.dim=24",
       "model.predictor.depth=1"]
EVAL = ["eval.protocols=[linear_probe,label_efficiency]", "eval.shots=[5]", "eval.fractions=[]",
        "eval.draws=3", "eval.init_seeds=1"]


@pytest.fixture(scope="module")
def series() -> tuple[SeriesArrays, SeriesArrays]:
    """The plugin's synthetic series: 4 classes, 2 channels, lengths 48-64 padded to 64."""
    train, test, _ = synthetic(n=120, seed=0)
    return train, test


def copy_of(data: SeriesArrays, values: torch.Tensor | None = None) -> SeriesArrays:
    return SeriesArrays((data.values if values is None else values).numpy().copy(),
                        data.lengths.numpy(), data.labels.numpy())


def test_minirocket_is_fitted_on_the_training_rows_only(series):
    train, test = series
    rows = np.arange(0, len(train), 2)  # the training split of a parent holding other series
    features = minirocket(train, rows, 0)
    x_train, x_test = features(train), features(test)
    assert x_train.shape == (len(train), FEATURES) and x_test.shape == (len(test), FEATURES)
    assert x_train.dtype == np.float32 and np.isfinite(x_train).all()

    others = train.values.clone()
    others[1::2] = 5 * torch.randn_like(others[1::2])  # every series outside `rows` replaced
    refit = minirocket(copy_of(train, others), rows, 0)
    np.testing.assert_array_equal(refit(test), x_test)
    np.testing.assert_array_equal(refit(train)[rows], x_train[rows])

    changed = train.values.clone()
    changed[rows] = 3 * changed[rows] + 1  # the training series themselves
    assert not np.array_equal(minirocket(copy_of(train, changed), rows, 0)(test), x_test)


def test_minirocket_is_seeded_and_is_not_the_raw_values(series):
    train, test = series
    rows = np.arange(len(train))
    x = minirocket(train, rows, 0)(test)
    np.testing.assert_array_equal(minirocket(train, rows, 0)(test), x)
    assert not np.array_equal(minirocket(train, rows, 1)(test), x)
    raw = raw_features(test).numpy()
    assert raw.shape == (len(test), 2 * 64) and x.shape[1] == FEATURES
    assert not np.isin(x[0], raw[0]).all()


def test_series_shorter_than_nine_steps_are_padded_not_refused():
    rng = np.random.default_rng(0)
    short = SeriesArrays(rng.normal(size=(6, 1, 5)).astype(np.float32), np.full(6, 5),
                         np.arange(6) % 2)
    x = minirocket(short, np.arange(4), 0)(short)
    assert x.shape == (6, FEATURES) and np.isfinite(x).all()


def test_without_aeon_the_baseline_is_skipped_with_one_line(series, monkeypatch, caplog):
    train, test = series
    monkeypatch.setitem(sys.modules, AEON, None)  # `import` of it now fails
    with pytest.raises(MissingExtraError, match=r"pip install 'polyjepa\[timeseries\]'"):
        minirocket(train, np.arange(len(train)), 0)
    with caplog.at_level(logging.WARNING, logger="polyjepa"):
        assert baseline_features(plugin.baselines, train, test, 0) == {}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "minirocket" in lines[0]
    assert "pip install 'polyjepa[timeseries]'" in lines[0]


@pytest.fixture(scope="module")
def ts_run(tmp_path_factory):
    """A 3-step TS-JEPA run on the plugin's synthetic series (a validation split carved from
    the training series: the baseline is fitted on the rest)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the function-scoped `single_thread` is not active yet
    try:
        return pretrain("ts_jepa_masked", RUN, tmp_path_factory.mktemp("ts") / "run")
    finally:
        torch.set_num_threads(threads)


def test_a_time_series_run_is_evaluated_beside_minirocket(ts_run, capsys):
    assert main(["eval", str(ts_run), *EVAL, "--device", "cpu", "--no-report"]) == 0
    capsys.readouterr()
    result = json.loads((ts_run / "eval.json").read_text())
    assert result["baselines"] == ["minirocket"]
    assert list(result["linear_probe"]) == ["pretrained", "random_init", "raw_features",
                                            "minirocket"]
    assert result["linear_probe"]["minirocket"] > 0.8  # 4 classes: chance is 0.25
    (five,) = result["label_efficiency"]["budgets"]
    assert five["minirocket"]["mean"] > 0.6
    versus = five["versus"]["minirocket"]
    assert versus["verdict"] in LE.VERDICTS
    assert versus["difference"]["mean"] == pytest.approx(
        five["pretrained"]["mean"] - five["minirocket"]["mean"])
    table = (ts_run / "eval.txt").read_text()
    assert "\nminirocket " in table  # a row of the accuracy table
    assert "pretrained - minirocket" in table and "verdict vs minirocket" in table
    assert "vs minirocket: linear_probe" in table
    page = write_report([ts_run], maps=False).read_text()
    assert "<th>minirocket</th>" in page


def test_without_aeon_a_run_evaluates_as_before(ts_run, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, AEON, None)
    with caplog.at_level(logging.WARNING, logger="polyjepa"):
        result = evaluate_run(ts_run, device="cpu", overrides=["eval.protocols=[linear_probe]",
                                                               "eval.init_seeds=1"])
    assert list(result["linear_probe"]) == ["pretrained", "random_init", "raw_features"]
    assert "baselines" not in result
    assert ["polyjepa[timeseries]" in r.getMessage() for r in caplog.records] == [True]
