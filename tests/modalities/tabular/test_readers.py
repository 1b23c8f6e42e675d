"""Tests of the tabular readers: file formats, sniffing, checks and encoding."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _helpers import logged

from polyjepa.errors import DataError
from polyjepa.modalities.tabular.readers import (
    TabularDataConfig,
    TabularEncoder,
    load_splits,
    read_frame,
    synthetic_frame,
)

SHARED_ADULT = Path("/work/shared/data/tabular/adult")
HEADER = ["age", "color", "score", "label"]
COLORS = ["red", "green", "blue"]


def rows(n: int = 20, offset: float = 0.0) -> list[list[str]]:
    """n rows of (age, color, score, label) with both labels and all colors present."""
    return [
        [str(20 + i + offset), COLORS[i % 3], f"{i * 1.5 + offset:.1f}", "yes" if i % 2 else "no"]
        for i in range(n)
    ]


def write(path: Path, table: list[list[str]], delimiter: str = ",", header: bool = True) -> Path:
    """Write `table` (with HEADER unless header=False) as delimited text."""
    lines = ([HEADER] if header else []) + table
    path.write_text("\n".join(delimiter.join(r) for r in lines) + "\n")
    return path


def config(train: Path, test: Path | None = None, **overrides) -> TabularDataConfig:
    """A config for a train file and an optional test file (else a split)."""
    return TabularDataConfig(
        path=str(train), test_path=None if test is None else str(test), **overrides
    )


def read(path: Path, **overrides) -> pd.DataFrame:
    return read_frame(str(path), config(path, **overrides), None, "data.path")


# --- bundled and shared data -----------------------------------------------------------------


def check_adult(cfg: TabularDataConfig) -> None:
    train, test, encoder = load_splits(cfg, None)
    meta = encoder.meta
    assert (len(train), len(test)) == (32561, 16281)
    assert meta["num_numeric"] == 6
    assert len(meta["cardinalities"]) == 8
    assert len(meta["feature_names"]) == 14
    assert meta["num_classes"] == 2
    assert meta["class_names"] == ["<=50K", ">50K"]  # test labels "<=50K." mapped
    assert set(test.tensors.y.tolist()) == {0, 1}
    assert train.tensors.num.shape == (32561, 6) and train.tensors.cat.shape == (32561, 8)
    assert (train.tensors.cat == 0).any()  # "?" values are missing


def test_bundled_adult_loads() -> None:
    check_adult(TabularDataConfig())


@pytest.mark.skipif(
    not SHARED_ADULT.is_dir(), reason=f"shared Adult data folder {SHARED_ADULT} is absent"
)
def test_shared_adult_loads() -> None:
    check_adult(
        TabularDataConfig(
            path=str(SHARED_ADULT / "adult-train.csv"),
            test_path=str(SHARED_ADULT / "adult-test.csv"),
        )
    )


def test_unknown_builtin_lists_available() -> None:
    cfg = TabularDataConfig(path="builtin:nope")
    with pytest.raises(DataError, match="builtin:nope.*builtin:adult-train"):
        read_frame(cfg.path, cfg, None, "data.path")


def test_sklearn_breast_cancer() -> None:
    cfg = TabularDataConfig(path="sklearn:breast_cancer", test_path=None)
    train, test, encoder = load_splits(cfg, None)
    meta = encoder.meta
    assert len(train) + len(test) == 569
    assert meta["num_numeric"] == 30 and meta["cardinalities"] == []
    assert meta["class_names"] == ["benign", "malignant"]
    assert train.raw_features().shape == (len(train), 30)


def test_unknown_sklearn_lists_available() -> None:
    cfg = TabularDataConfig(path="sklearn:mnist")
    with pytest.raises(DataError, match="sklearn:mnist.*breast_cancer.*wine.*iris.*digits"):
        read_frame(cfg.path, cfg, None, "data.path")


# --- formats, sniffing, header and target ----------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", ", ", "|"])
def test_delimiter_sniffed(tmp_path: Path, delimiter: str) -> None:
    frame = read(write(tmp_path / "t.csv", rows(), delimiter))
    assert list(frame.columns) == HEADER
    assert frame["color"].iloc[0] == "red" and frame["age"].dtype == np.float64


def test_tab_wins_over_commas_inside_values(tmp_path: Path) -> None:
    table = [[f"Smith, J{i}", str(i), "yes" if i % 2 else "no"] for i in range(10)]
    path = tmp_path / "t.tsv"
    path.write_text("\n".join("\t".join(r) for r in table) + "\n")
    frame = read(path)
    assert frame.shape == (10, 3) and frame["0"].iloc[0] == "Smith, J0"


def test_header_detected(tmp_path: Path) -> None:
    frame = read(write(tmp_path / "t.csv", rows()))
    assert list(frame.columns) == HEADER and len(frame) == 20


def test_no_header_detected(tmp_path: Path) -> None:
    frame = read(write(tmp_path / "t.csv", rows(), header=False))
    assert list(frame.columns) == ["0", "1", "2", "3"] and len(frame) == 20


def test_header_forced(tmp_path: Path) -> None:
    frame = read(write(tmp_path / "t.csv", rows(), header=False), header=True)
    assert list(frame.columns) == rows()[0] and len(frame) == 19


def test_target_by_name_and_negative_index(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", rows())
    by_name = load_splits(config(path, target="color"), None)[2].meta
    assert by_name["class_names"] == sorted(COLORS)
    assert by_name["feature_names"] == ["age", "score", "label"]
    by_index = load_splits(config(path, target=-3), None)[2].meta
    assert by_index == by_name


def test_target_by_position_name_without_header(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", rows(), header=False)
    assert load_splits(config(path, target="3"), None)[2].meta == load_splits(config(path), None)[2].meta


def test_gzip_and_parquet_round_trip(tmp_path: Path) -> None:
    text = write(tmp_path / "t.csv", rows())
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(text.read_bytes()))
    frame = read(gz)
    pd.testing.assert_frame_equal(frame, read(text))
    parquet = tmp_path / "t.parquet"
    frame.reset_index(drop=True).to_parquet(parquet)
    back = read(parquet)
    pd.testing.assert_frame_equal(back.reset_index(drop=True), frame.reset_index(drop=True))


def test_categorical_override_by_position(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", rows())
    meta = load_splits(config(path, categorical=[0, "color"]), None)[2].meta
    assert meta["feature_names"] == ["score", "age", "color"]
    assert meta["cardinalities"] == [17, 4]  # 16 training ages (80% of 20) + missing


def test_forced_categorical_numbers_keep_missing(tmp_path: Path) -> None:
    frame = pd.DataFrame({"code": [3.0, np.nan, 2.5, 3.0], "label": ["a", "b", "a", "b"]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    encoder = TabularEncoder.fit(read(path, categorical=["code"]), TabularDataConfig(), "t")
    assert encoder.vocabularies == [["2.5", "3"]]
    assert encoder.transform(frame, "t").cat[:, 0].tolist() == [2, 0, 1, 2]


def test_unlisted_text_column_must_be_numeric(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", rows())
    with pytest.raises(DataError, match=r"t\.csv.*'color'.*line 2.*'red'"):
        read(path, categorical=[])


# --- encoding ----------------------------------------------------------------------------------


def test_standardisation_uses_training_statistics(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", rows(40))
    test = write(tmp_path / "test.csv", rows(40, offset=100.0))
    train_set, test_set, _ = load_splits(config(train, test), None)
    assert torch.allclose(train_set.tensors.num.mean(0), torch.zeros(2), atol=1e-5)
    assert (test_set.tensors.num.mean(0) > 5).all()  # shifted by 100 / std(~12 and ~17)


def test_missing_numeric_is_training_mean(tmp_path: Path) -> None:
    table = rows()
    table[3][0] = "?"
    train_set = load_splits(config(write(tmp_path / "t.csv", table), tmp_path / "t.csv"), None)[0]
    assert train_set.tensors.num[3, 0] == 0.0


def test_unseen_test_category_maps_to_zero(tmp_path: Path) -> None:
    test_rows = rows(4)
    test_rows[1][1] = "purple"
    test_rows[2][1] = "?"
    train = write(tmp_path / "train.csv", rows())
    _, test_set, encoder = load_splits(config(train, write(tmp_path / "test.csv", test_rows)), None)
    meta = encoder.meta
    assert meta["cardinalities"] == [4]
    assert test_set.tensors.cat[:, 0].tolist() == [3, 0, 0, 3]  # blue=1, green=2, red=3


def test_raw_features_and_items(tmp_path: Path) -> None:
    train_set, _, encoder = load_splits(config(write(tmp_path / "t.csv", rows())), None)
    meta = encoder.meta
    raw = train_set.raw_features()
    assert raw.shape == (len(train_set), 2 + 3)
    assert torch.equal(raw[:, 2:].sum(1), torch.ones(len(train_set)))
    x, y = train_set[0]
    assert x["num"].shape == (2,) and x["cat"].shape == (1,) and x["cat"].dtype == torch.int64
    assert y.dtype == torch.int64 and y.dim() == 0
    assert meta == {
        "feature_names": ["age", "score", "color"],
        "num_numeric": 2,
        "cardinalities": [4],
        "num_classes": 2,
        "class_names": ["no", "yes"],
        "task": "classification",
    }


def test_test_labels_with_trailing_dot(tmp_path: Path) -> None:
    test_rows = [[*r[:3], r[3] + "."] for r in rows(4)]
    train = write(tmp_path / "train.csv", rows())
    _, test_set, _ = load_splits(config(train, write(tmp_path / "test.csv", test_rows)), None)
    assert test_set.tensors.y.tolist() == [0, 1, 0, 1]


def test_encoder_state_round_trips(tmp_path: Path) -> None:
    frame = read(write(tmp_path / "t.csv", rows()))
    encoder = TabularEncoder.fit(frame, TabularDataConfig(), "t.csv")
    restored = TabularEncoder(**dataclasses.asdict(encoder))
    assert torch.equal(restored.transform(frame, "t").num, encoder.transform(frame, "t").num)


def test_split_falls_back_without_stratification(tmp_path: Path, caplog) -> None:
    table = rows()
    table[0][3] = "maybe"  # a class with a single row
    with logged(caplog, "not stratified.*'maybe'"):
        train_set, test_set, _ = load_splits(config(write(tmp_path / "t.csv", table)), None)
    assert (len(train_set), len(test_set)) == (16, 4)


def test_synthetic_frame() -> None:
    frame = synthetic_frame(500, seed=1)
    assert frame.shape == (500, 10)
    assert frame["label"].nunique() == 3
    assert 0.005 < frame.drop(columns="label").isna().to_numpy().mean() < 0.05
    cfg = TabularDataConfig(target="label")
    encoder = TabularEncoder.fit(frame, cfg, "synthetic")
    assert encoder.meta["num_numeric"] == 6 and encoder.meta["cardinalities"] == [5, 4, 3]
    assert encoder.transform(frame, "synthetic").num.isfinite().all()


# --- bad input -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere.csv"):
        read(tmp_path / "nothere.csv")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read(path)


def test_blank_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n  \n")
    with pytest.raises(DataError, match=r"blank\.csv has no data rows"):
        read(path)


def test_header_only_file(tmp_path: Path) -> None:
    path = write(tmp_path / "head.csv", [])
    with pytest.raises(DataError, match=r"head\.csv has no data rows"):
        read(path, header=True)


def test_single_row(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"one\.csv has only 1 data row"):
        read(write(tmp_path / "one.csv", rows(1)), header=True)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"t\.xlsx: unknown file type"):
        read(path)


def test_target_absent(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", rows())
    with pytest.raises(DataError, match=r"'income' is not in .*t\.csv.*'age', 'color'"):
        read(path, target="income")
    with pytest.raises(DataError, match=r"position 7 is out of range for .*t\.csv"):
        read(path, target=7)


def test_all_missing_column(tmp_path: Path) -> None:
    table = [[r[0], "?", *r[2:]] for r in rows()]
    with pytest.raises(DataError, match=r"t\.csv.*every value of column 'color' is missing.*drop"):
        read(write(tmp_path / "t.csv", table))


def test_junk_in_numeric_column(tmp_path: Path) -> None:
    table = rows()
    table[6][2] = "12,5x"
    with pytest.raises(DataError, match=r"t\.csv.*column 'score' is numeric but line 8.*'12,5x'"):
        read(write(tmp_path / "t.csv", table, delimiter=";"))


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    lines = [",".join(r) for r in [HEADER, *rows()]]
    lines[5] = ""  # line 6 is blank
    lines[9] = "28,blue,oops,yes"  # line 10
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"'score' is numeric but line 10 holds 'oops'"):
        read(path)


@pytest.mark.parametrize(("value", "problem"), [("nan", "NaN"), ("-inf", "infinite value")])
def test_non_finite_numeric(tmp_path: Path, value: str, problem: str) -> None:
    table = rows()
    table[4][0] = value
    with pytest.raises(DataError, match=rf"t\.csv.*column 'age' holds (an )?{problem} at line 6"):
        read(write(tmp_path / "t.csv", table))


def test_missing_labels(tmp_path: Path) -> None:
    table = rows()
    table[2][3] = "?"
    table[5][3] = ""
    with pytest.raises(DataError, match=r"t\.csv: 2 rows have no label in column 'label'.*line 4"):
        read(write(tmp_path / "t.csv", table))


def test_test_columns_differ(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", rows())
    test = tmp_path / "test.csv"
    test.write_text("age,colour,score,label\n" + "\n".join(",".join(r) for r in rows(4)))
    with pytest.raises(DataError, match=r"test\.csv.*missing \['color'\], unexpected \['colour'\]"):
        load_splits(config(train, test), None)


def test_unseen_test_label(tmp_path: Path) -> None:
    test_rows = rows(4)
    test_rows[2][3] = "perhaps"
    train = write(tmp_path / "train.csv", rows())
    with pytest.raises(DataError, match=r"test\.csv.*not seen in training: 'perhaps'.*line 4"):
        load_splits(config(train, write(tmp_path / "test.csv", test_rows)), None)
