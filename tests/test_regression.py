"""Regression targets (`data.task`, `polyjepa.targets`): a numeric label with many distinct
values is read as a real-valued target, never as hundreds of classes; tables and series train,
select and evaluate with ridge probes (R², MAE) and label efficiency by fraction; plugins that
read only classes, and fine-tuning, refuse it in one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from _helpers import single_thread, tiny_recipe, write_recipe  # noqa: F401  (autouse fixture)

from polyjepa.build import load_recipe, load_splits
from polyjepa.cli import main
from polyjepa.data import dataset_labels
from polyjepa.errors import DataError
from polyjepa.finetune import finetune_run
from polyjepa.probes import online_probe
from polyjepa.selection import selection_rule
from polyjepa.targets import decide_task

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("labels, task, expected", [
    ([str(v) for v in RNG.integers(25, 346, 400)], "auto", "regression"),  # diabetes-like
    ([str(v) for v in RNG.integers(0, 10, 400)], "auto", "classification"),  # digits 0-9
    ([str(v) for v in RNG.integers(1, 41, 2000)], "auto", "classification"),  # 40 coded classes
    ([f"{v:.3f}" for v in RNG.normal(size=30)], "auto", "regression"),  # a measurement
    ([str(v) for v in RNG.integers(25, 346, 400)], "classification", "classification"),
    (["3", "5", "5", "3"], "regression", "regression"),
    (["cat", "dog"] * 200, "auto", "classification"),
])
def test_decide_task(labels, task, expected):
    assert decide_task(labels, task, "t") == expected


def test_regression_asked_of_names_is_refused_naming_one():
    with pytest.raises(DataError, match="data.task=regression needs numbers.*'dog'"):
        decide_task(["1.5", "dog"], "regression", "t")


def _table(n: int = 300) -> pd.DataFrame:
    """Six numeric features and a target that is a noisy linear function of them, with about
    as many distinct values as rows."""
    x = RNG.normal(size=(n, 6))
    target = 50 + 20 * x @ np.array([1.0, -0.5, 0.3, 0.0, 0.8, 0.2]) + RNG.normal(size=n)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    frame["progression"] = np.round(target)
    return frame


def _regression_run(tmp_path, capsys) -> tuple:
    _table().to_csv(tmp_path / "rows.csv", index=False)
    raw = tiny_recipe(train={"max_steps": 6, "probe_every": 3, "select": "val_probe"},
                      synthetic=False,
                      data={"path": str(tmp_path / "rows.csv"), "test_path": None,
                            "target": "progression", "val_fraction": 0.2})
    recipe, run = write_recipe(raw, tmp_path), tmp_path / "run"
    assert main(["pretrain", str(recipe), "--out", str(run)]) == 0
    return recipe, run, capsys.readouterr().err


def test_a_numeric_table_target_trains_selects_and_evaluates_as_regression(tmp_path, capsys):
    recipe, run, err = _regression_run(tmp_path, capsys)
    assert "read as a regression target" in err and "data.task=classification" in err
    assert "a real-valued target (regression" in err
    splits = load_splits(load_recipe(str(run / "config.yaml")))
    y = dataset_labels(splits.train)
    assert y.dtype == np.float32 and len(np.unique(y)) > 50  # targets, not class indices
    assert splits.meta["num_classes"] == 0 and splits.meta["task"] == "regression"
    # the online probe scored R² on the validation targets, and selection chose by it
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in rows if "probe/few_shot" in r]
    assert probed and all(r["probe/linear"] <= 1.0 and "probe/mae" in r for r in probed)
    assert json.loads((run / "run.json").read_text())["selection"]["by"] == "val_probe"
    assert main(["eval", str(run), "eval.protocols=[linear_probe,knn,svm,label_efficiency]",
                 "eval.init_seeds=2", "eval.draws=3", "--json"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result["metric"] == "r2" and "svm" not in result and "left out" in out.err
    # raw features hold the linear signal: their ridge R² is high, their MAE a few units
    assert result["linear_probe"]["raw_features"] > 0.9
    assert 0 < result["linear_probe_mae"]["raw_features"] < 5
    assert len(result["random_init_each"]["linear_probe"]) == 2
    le = result["label_efficiency"]
    assert le["metric"] == "r2" and {b["kind"] for b in le["budgets"]} == {"fraction"}
    assert "R²" in (run / "eval.txt").read_text()


def test_fine_tuning_a_regression_run_is_refused(tmp_path, capsys):
    _, run, _ = _regression_run(tmp_path, capsys)
    with pytest.raises(DataError, match="target is real-valued"):
        finetune_run(run, device="cpu")


def test_series_with_target_labels_are_regression(tmp_path, capsys):
    """A `.ts` file declaring `@targetLabel true`: each series' amplitude is its target."""
    lines = ["@problemName amp", "@univariate true", "@equalLength true", "@targetLabel true",
             "@data"]
    t = np.arange(40)
    for _ in range(120):
        amplitude = RNG.uniform(0.5, 3.0)
        wave = amplitude * np.sin(t / 3 + RNG.uniform(0, 6)) + 0.05 * RNG.normal(size=40)
        lines.append(",".join(f"{v:.4f}" for v in wave) + f":{amplitude:.4f}")
    (tmp_path / "amp.ts").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["pretrain", "my_series", f"data.path={tmp_path / 'amp.ts'}", "train.max_steps=2",
                 "train.min_steps=2", "train.progress=false", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "eval.protocols=[linear_probe]", "eval.init_seeds=1",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "r2" and -1 < result["linear_probe"]["pretrained"] <= 1
    y = dataset_labels(load_splits(load_recipe(str(run / "config.yaml"))).test)
    assert y.dtype == np.float32 and 0.5 <= y.min() and y.max() <= 3.0


def test_a_plugin_of_classes_refuses_regression_in_one_line(tmp_path, capsys):
    for name in ("low", "high"):
        (tmp_path / "wavs" / name).mkdir(parents=True)
        for k in range(4):
            sf.write(tmp_path / "wavs" / name / f"{k}.wav",
                     RNG.uniform(-0.3, 0.3, 4000).astype(np.float32), 16000)
    assert main(["pretrain", "my_audio", f"data.path={tmp_path / 'wavs'}", "data.task=regression",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "data.task=regression, but the audio plugin read class labels" in err
    assert not (tmp_path / "run").exists()
    assert main(["pretrain", "my_audio", f"data.path={tmp_path / 'wavs'}", "data.task=numbers",
                 "--out", str(tmp_path / "run")]) == 2
    assert "data.task must be one of auto, classification, regression" in capsys.readouterr().err


def test_online_probe_and_selection_on_targets():
    x = RNG.normal(size=(80, 5))
    y = (x @ np.arange(1.0, 6.0)).astype(np.float32)
    row = online_probe(x[:60], y[:60], x[60:], y[60:], k=5, shots=5, draws=3)
    assert row["probe/linear"] > 0.95 and row["probe/linear_mse"] == pytest.approx(
        1 - row["probe/linear"])
    assert row["probe/few_shot"] > 0.5  # 6 targets fit 5 weights well enough
    assert selection_rule("val_probe", y[60:]) == ("val_probe", None)
    rule, why = selection_rule("val_probe", y[:5])
    assert rule == "rankme" and "5 targets" in why
    assert selection_rule("val_probe", np.full(12, np.nan, np.float32))[0] == "rankme"


def test_known_rows_of_targets_with_several_columns():
    from polyjepa.targets import known_rows

    y = np.array([[1.0, 2.0], [np.nan, 0.5], [3.0, 4.0]], dtype=np.float32)
    assert known_rows(y).tolist() == [0, 2]
    assert known_rows(np.array([2, -1, 0])).tolist() == [0, 2]
