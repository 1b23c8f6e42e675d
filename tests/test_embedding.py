"""`polyjepa.embed`: from a run and a file, folder, table or array to embeddings with sample ids
and labels; `Embeddings.save`."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from _helpers import single_thread, tiny_recipe, wav_run, write_recipe  # noqa: F401
from _pools import CASES

import polyjepa
from polyjepa.build import load_datasets, load_recipe
from polyjepa.cli import main
from polyjepa.embedding import Embeddings
from polyjepa.errors import ConfigError, PolyjepaError
from polyjepa.hub import load_encoder
from polyjepa.modalities.tabular.readers import synthetic_frame
from polyjepa.train import pretrain


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("table")
    return pretrain(write_recipe(tiny_recipe(), directory), [], directory / "run")


def test_embed_a_table_from_a_file_and_from_a_dataframe(table_run, tmp_path):
    frame = synthetic_frame(60, seed=3)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    from_file = polyjepa.embed(table_run, tmp_path / "rows.csv", device="cpu")
    from_frame = polyjepa.embed(table_run, frame, device="cpu")
    assert from_file.x.shape == (60, 16) and from_file.x.dtype == np.float32
    np.testing.assert_array_equal(from_file.x, from_frame.x)
    np.testing.assert_array_equal(from_file.labels, from_frame.labels)
    assert from_frame.ids == [str(i) for i in range(60)]  # not the temporary file's name
    # labels index `classes`, which are the training table's
    names = from_file.label_names()
    assert [str(v) for v in frame["label"]] == names
    # the same numbers as the encoder applied by hand to the preprocessed rows
    recipe = load_recipe(str(table_run / "config.yaml"))
    encoder = load_encoder(table_run)
    dataset = recipe.plugin.load_file(recipe.cfg.data, str(tmp_path / "rows.csv"), None,
                                      load_datasets(recipe)[2])
    x = {"num": torch.stack([dataset[i][0]["num"] for i in range(60)]),
         "cat": torch.stack([dataset[i][0]["cat"] for i in range(60)])}
    with torch.no_grad():
        by_hand = encoder.embed(x, recipe.cfg.eval.pooling).numpy()
    np.testing.assert_allclose(from_file.x, by_hand, atol=1e-5)
    with pytest.raises(PolyjepaError, match="a list of paths, a pandas DataFrame or a numpy array, got list"):
        polyjepa.embed(table_run, [1, 2, 3], device="cpu")


def test_save_npz_and_npy_with_its_sidecar(tmp_path):
    out = Embeddings(np.arange(6, dtype=np.float32).reshape(3, 2), np.array([1, -1, 0]),
                     ["a.wav", "b,c.wav", "d.wav"], ["cat", "dog"])
    assert out.label_names() == ["dog", "", "cat"]
    [npz] = out.save(tmp_path / "e.npz")
    saved = np.load(npz)
    np.testing.assert_array_equal(saved["x"], out.x)
    assert saved["ids"].tolist() == out.ids and saved["classes"].tolist() == ["cat", "dog"]
    npy, sidecar = out.save(tmp_path / "sub" / "e.npy")
    np.testing.assert_array_equal(np.load(npy), out.x)
    rows = list(csv.reader(sidecar.open()))
    assert rows == [["row", "id", "label", "class"], ["0", "a.wav", "1", "dog"],
                    ["1", "b,c.wav", "-1", ""], ["2", "d.wav", "0", "cat"]]
    for bad in (tmp_path / "e.txt", tmp_path):
        with pytest.raises(ConfigError, match="--out"):
            out.save(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npz", "sub"]  # nothing half-written


def test_a_folder_of_wavs_gives_file_paths_as_ids(tmp_path):
    run = wav_run(tmp_path, per_class=6, steps=2)
    out = polyjepa.embed(run, tmp_path / "data", device="cpu")
    assert len(out.ids) == 12 and all(i.endswith(".wav") for i in out.ids)
    for i, label in zip(out.ids, out.label_names(), strict=True):
        assert f"/{label}/" in i  # each id is the file whose class folder gave the label
    assert np.isfinite(out.x).all() and out.x.shape[0] == 12


def _pool_paths(overrides: list[str]) -> list[str]:
    """The paths of a `data.unlabelled=...` override (one path, or a `[a, b]` list)."""
    value = overrides[-1].split("=", 1)[1]
    return [p.strip() for p in value.strip("[]").split(",")]


@pytest.mark.parametrize("recipe", sorted(CASES))
@pytest.mark.filterwarnings("ignore:train.batch_size")
def test_embed_reads_data_without_labels_in_every_modality(recipe, tmp_path, capsys):
    """`polyjepa embed RUN DATA` takes what `data.unlabelled` takes (flat folders, single files,
    glob patterns, manifests and tables without labels): every sample comes out, labelled -1."""
    overrides, pool_size = CASES[recipe](tmp_path)
    run = tmp_path / "run"
    assert main(["pretrain", recipe, *overrides[:-1], "train.max_steps=1", "train.min_steps=1",
                 "train.progress=false", "--out", str(run)]) == 0
    counted = 0
    for k, path in enumerate(_pool_paths(overrides)):
        out = tmp_path / f"pool{k}.npz"
        assert main(["embed", str(run), path, "--out", str(out)]) == 0, capsys.readouterr().err
        saved = np.load(out)
        assert saved["x"].shape[0] == len(saved["ids"]) > 0 and np.isfinite(saved["x"]).all()
        assert set(saved["labels"].tolist()) == {-1}
        counted += len(saved["ids"])
    assert counted == pool_size


def test_embed_takes_data_overrides_and_refuses_others(table_run, tmp_path, capsys):
    frame = synthetic_frame(20, seed=5).drop(columns=["label"])
    frame.to_csv(tmp_path / "rows.csv", index=False, sep=";")
    out = tmp_path / "e.npz"
    assert main(["embed", str(table_run), str(tmp_path / "rows.csv"), "data.delimiter=;",
                 "data.target=null", "--out", str(out)]) == 0
    assert np.load(out)["x"].shape[0] == 20
    assert main(["embed", str(table_run), str(tmp_path / "rows.csv"), "train.max_steps=3",
                 "--out", str(tmp_path / "f.npz")]) == 2
    assert "train.max_steps is not a data.* key" in capsys.readouterr().err
    assert not (tmp_path / "f.npz").exists()


def test_embed_a_table_from_an_array_by_column_position(table_run, tmp_path):
    """A numeric array is a table whose columns are the training table's feature columns in
    order; errors about in-memory data never name the temporary file it passes through."""
    frame = synthetic_frame(200, seed=6)
    numeric = frame[[c for c in frame.columns if c.startswith("num_")] + ["label"]]
    numeric.iloc[:150].to_csv(tmp_path / "train.csv", index=False)
    raw = tiny_recipe(train={"max_steps": 1}, synthetic=False,
                      data={"path": str(tmp_path / "train.csv"), "test_path": None,
                            "target": "label"})
    run = pretrain(write_recipe(raw, tmp_path), [], tmp_path / "run")
    rows = numeric.iloc[150:].drop(columns=["label"])
    by_name = polyjepa.embed(run, rows, device="cpu")
    by_position = polyjepa.embed(run, rows.to_numpy(), device="cpu")
    np.testing.assert_array_equal(by_name.x, by_position.x)
    assert set(by_position.labels.tolist()) == {-1} and by_position.x.shape[0] == 50
    # the mixed-type run's table has 9 feature columns: 6 numbers are refused, naming the array
    with pytest.raises(PolyjepaError, match="the ndarray given to embed: 6 unnamed columns") as err:
        polyjepa.embed(table_run, rows.to_numpy(), device="cpu")
    assert "array.npy" not in str(err.value) and "tmp" not in str(err.value)
