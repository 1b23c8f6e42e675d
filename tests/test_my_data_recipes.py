"""The generic `my_*` recipes on a user's own small data, as a new user would run them: the
README's two commands (`pretrain my_X data.path=...`, `eval`) succeed on the first try, with
labels from class folders, a seeded split and batches that fit the data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from _helpers import logged, single_thread  # noqa: F401  (autouse fixture)

from polyjepa.cli import main
from polyjepa.config import read_recipe
from polyjepa.modalities.tabular.readers import synthetic_frame

QUICK = ["train.max_steps=2", "train.progress=false", "train.probe_every=1",
         "train.keep_checkpoints=[]"]
QUICK_EVAL = ["eval.init_seeds=1", "eval.draws=2", "eval.shots=[1,2]", "eval.fractions=[]",
              "--json", "--device", "cpu"]


def run_both(recipe: str, data, out, capsys, *extra: str) -> dict:
    with pytest.warns(UserWarning, match="larger than the"):  # the demo's batch, capped
        code = main(["pretrain", recipe, f"data.path={data}", *QUICK, *extra, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["eval", str(out), *QUICK_EVAL]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    baselines = {"minirocket"} if recipe == "my_series" else set()  # the field's, for series
    # a run that selects keeps its step-0 network, and eval pairs the run with it (own_init)
    assert set(result["linear_probe"]) == {"pretrained", "random_init", "raw_features", "own_init",
                                           *baselines}
    assert (out / "eval.json").is_file()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("probe/linear" in row for row in metrics)  # the online probe ran on the val split
    return result


def test_my_audio_on_a_folder_of_class_folders(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for k, name in enumerate(("door", "bell", "dog")):
        (tmp_path / "wavs" / name).mkdir(parents=True)
        for i in range(8):
            t = np.arange(8000) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * k) * t) + 0.01 * rng.normal(size=t.size)
            sf.write(tmp_path / "wavs" / name / f"take{i}.wav", wave.astype(np.float32), 16000)
    result = run_both("my_audio", tmp_path / "wavs", tmp_path / "run", capsys,
                      "data.logmel.norm_clips=16")
    # 24 clips: 20 % for test (5), 10 % of the other 19 for validation (2)
    assert result["n_test"] == 5 and result["n_train"] == 17
    config = read_recipe(tmp_path / "run" / "config.yaml")
    assert config["data"]["label_regex"] is None and config["data"]["sample_rate"] == 16000


def test_my_table_on_a_csv(tmp_path, capsys):
    synthetic_frame(150, seed=5).to_csv(tmp_path / "rows.csv", index=False)
    result = run_both("my_table", tmp_path / "rows.csv", tmp_path / "run", capsys,
                      "data.target=label")
    assert result["n_test"] == 30


def test_my_clouds_on_a_folder_of_xyz_files(tmp_path, capsys, caplog):
    rng = np.random.default_rng(1)
    for name, scale in (("pole", [0.1, 0.1, 2.0]), ("roof", [2.0, 2.0, 0.1])):
        (tmp_path / "clouds" / name).mkdir(parents=True)
        for i in range(8):
            points = rng.normal(size=(300, 3)) * scale
            np.savetxt(tmp_path / "clouds" / name / f"{i}.xyz", points, fmt="%.4f")
    with logged(caplog, "resampled"):
        result = run_both("my_clouds", tmp_path / "clouds", tmp_path / "run", capsys)
    assert result["n_test"] == 4


def test_my_videos_on_a_folder_of_arrays(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for name in ("left", "right"):
        (tmp_path / "clips" / name).mkdir(parents=True)
        for i in range(6):
            clip = (rng.random((18, 40, 48, 3)) * 255).astype(np.uint8)  # any size, colour
            np.save(tmp_path / "clips" / name / f"{i}.npy", clip)
    result = run_both("my_videos", tmp_path / "clips", tmp_path / "run", capsys)
    assert result["n_test"] == 3


def test_my_series_on_series_of_any_length_some_shorter_than_a_patch(tmp_path, capsys, caplog):
    """A long table of 40 series of 3 to 120 steps: the 10 patches of the longest are 12 steps,
    so a series of 3 covers one patch; `data.length_policy=auto` stretches those, with one
    warning, instead of stopping at step 0 (issue 28)."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        label = ("calm", "wavy")[i % 2]
        t = int(rng.integers(3, 121)) if i > 1 else (3, 120)[i]
        wave = np.sin(np.arange(t) / (2 if label == "wavy" else 20)) + 0.1 * rng.normal(size=t)
        rows += [{"id": i, "time": k, "value": v, "label": label} for k, v in enumerate(wave)]
    pd.DataFrame(rows).to_csv(tmp_path / "series.csv", index=False)
    with logged(caplog, "shorter than 20% of the length 120: stretched to 24 steps"):
        result = run_both("my_series", tmp_path / "series.csv", tmp_path / "run", capsys)
    assert result["n_test"] == 8
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["selection"]["by"] == "val_probe"  # 6 validation series, 3 of each class


def test_a_generic_recipe_without_data_says_what_to_pass(tmp_path, capsys):
    assert main(["pretrain", "my_table", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "data.path is empty" in err and "data.path=my_data" in err
    assert not (tmp_path / "run").exists()
