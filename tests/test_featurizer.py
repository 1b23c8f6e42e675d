"""`polyjepa.Featurizer` (a scikit-learn transformer over a run's frozen encoder), `batches` (user
data as the batches `load_encoder` takes) and the README block that shows them, run as written."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _helpers import (  # noqa: F401  (single_thread: autouse fixture)
    single_thread,
    tiny_recipe,
    wav_run,
    write_recipe,
)
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

import polyjepa
from polyjepa.modalities.tabular.readers import synthetic_frame
from polyjepa.train import pretrain

README = Path(__file__).resolve().parents[1] / "README.md"


def _numeric(n: int, seed: int) -> pd.DataFrame:
    frame = synthetic_frame(n, seed=seed)
    return frame[[c for c in frame.columns if c.startswith("num_")] + ["label"]]


@pytest.fixture(scope="module")
def rows_run(tmp_path_factory):
    """A numeric table run at `runs/rows` under a working folder, as the README names it."""
    folder = tmp_path_factory.mktemp("work")
    _numeric(300, 1).to_csv(folder / "rows.csv", index=False)
    raw = tiny_recipe(train={"max_steps": 2}, synthetic=False,
                      data={"path": str(folder / "rows.csv"), "test_path": None,
                            "target": "label"})
    pretrain(write_recipe(raw, folder), [], folder / "runs" / "rows")
    _numeric(60, 2).to_csv(folder / "more_rows.csv", index=False)
    return folder


def test_the_readme_block_runs_as_written(rows_run, monkeypatch):
    text = README.read_text()
    block = re.search(r"<!-- tested: tests/test_featurizer.py -->\n```python\n(.*?)```", text,
                      re.S)
    assert block, "README lost its tested downstream-use block"
    monkeypatch.chdir(rows_run)
    dataframe = pd.read_csv("more_rows.csv")
    namespace = {"dataframe": dataframe, "array": dataframe.drop(columns="label").to_numpy()}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102
    assert (rows_run / "more_rows.npz").is_file()
    assert len(namespace["scores"]) == 3 and all(0 <= s <= 1 for s in namespace["scores"])
    assert namespace["features"].shape[1] == namespace["out"].x.shape[1]


def test_featurizer_is_a_transformer_that_clones_pickles_and_names_its_columns(rows_run):
    run = rows_run / "runs" / "rows"
    frame = pd.read_csv(rows_run / "more_rows.csv")
    featurizer = polyjepa.Featurizer(run, device="cpu")
    x = featurizer.fit_transform(frame)
    np.testing.assert_array_equal(x, polyjepa.embed(run, frame, device="cpu").x)
    assert x.shape == (60, featurizer.n_features_out_)
    names = featurizer.get_feature_names_out()
    assert list(names[:2]) == ["polyjepa0", "polyjepa1"] and len(names) == x.shape[1]
    copy = clone(featurizer)
    assert copy.get_params() == featurizer.get_params() and not hasattr(copy, "encoder_")
    np.testing.assert_array_equal(copy.fit(frame).transform(frame), x)
    restored = pickle.loads(pickle.dumps(featurizer))  # joblib workers: the encoder reloads
    np.testing.assert_array_equal(restored.transform(frame), x)
    table = polyjepa.Featurizer(run, device="cpu").set_output(transform="pandas")
    out = table.fit_transform(frame)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(names)
    with pytest.raises(Exception, match="not fitted"):
        polyjepa.Featurizer(run).transform(frame)


def test_a_pipeline_under_cross_validation_scores_the_embeddings_of_each_fold(rows_run):
    """The encoder is frozen, so a pipeline's cross-validated scores equal a logistic regression
    cross-validated on embeddings computed up front: each fold embeds exactly its own rows."""
    run = rows_run / "runs" / "rows"
    frame = _numeric(300, 1)
    model = make_pipeline(polyjepa.Featurizer(run, device="cpu"), LogisticRegression(max_iter=2000))
    scores = cross_val_score(model, frame, frame["label"], cv=3)
    x = polyjepa.embed(run, frame, device="cpu").x
    by_hand = cross_val_score(LogisticRegression(max_iter=2000), x, frame["label"], cv=3)
    np.testing.assert_allclose(scores, by_hand)


def test_batches_are_what_the_encoder_takes(rows_run):
    run = rows_run / "runs" / "rows"
    frame = pd.read_csv(rows_run / "more_rows.csv")
    encoder = polyjepa.load_encoder(run)
    pooled = []
    for batch in polyjepa.batches(run, frame, batch_size=16, device="cpu"):
        assert batch.y.shape[0] <= 16 and (batch.y >= 0).all()
        with torch.no_grad():
            pooled.append(polyjepa.pool(encoder(batch.x), "mean"))
    np.testing.assert_allclose(torch.cat(pooled).numpy(),
                               polyjepa.embed(run, frame, device="cpu").x, atol=1e-5)


def test_a_list_of_files_is_embedded_in_order_with_their_paths(tmp_path):
    run = wav_run(tmp_path)
    files = [str(tmp_path / "data" / "high" / "2.wav"), str(tmp_path / "data" / "low" / "0.wav")]
    out = polyjepa.embed(run, files, device="cpu")
    assert out.ids == files and out.x.shape[0] == 2
    x = polyjepa.Featurizer(run, device="cpu").fit_transform(files)
    np.testing.assert_array_equal(x, out.x)
