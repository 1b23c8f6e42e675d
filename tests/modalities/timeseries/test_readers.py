"""Time-series readers: `.ts` files (round trips, UCR/UEA archives, bad inputs), wide and long
tables, `.npy`/`.npz` arrays, suffix dispatch and the `_TEST` twin of a `_TRAIN` file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polyjepa.errors import ConfigError, DataError
from polyjepa.modalities.timeseries import readers  # not `import test_twin`: pytest would collect it
from polyjepa.modalities.timeseries.config import TimeSeriesDataConfig
from polyjepa.modalities.timeseries.readers import read_arrays, read_series, read_table, read_ts

NAN = np.nan


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_series(actual: list[np.ndarray], expected: list[list[list[float]]]) -> None:
    assert [a.shape for a in actual] == [np.shape(e) for e in expected]
    for a, e in zip(actual, expected, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, np.asarray(e, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# .ts files


def test_ts_univariate_round_trip(tmp_path):
    path = write(tmp_path, "uni.ts", "# a comment\n@problemName Uni\n@univariate true\n"
                 "@someUnknownKey whatever\n@classLabel true Gun-Draw point\n@data\n"
                 "1.5,2,-3:Gun-Draw\n\n4e1,5,6:point\n")
    got = read_ts(path)
    assert_series(got.series, [[[1.5, 2, -3]], [[40, 5, 6]]])
    assert got.labels == ["Gun-Draw", "point"]  # exactly as written
    assert got.class_names == ["Gun-Draw", "point"]
    assert got.names == ["uni.ts line 7", "uni.ts line 9"]
    assert got.channel_names == ["0"] and got.actions is None and got.action_names == []
    assert got.source == str(path)


def test_ts_multivariate_variable_length_missing(tmp_path):
    path = write(tmp_path, "multi.ts", "@PROBLEMNAME m\n@Missing TRUE\n@dimensions 2\n"
                 "@EqualLength false\n@classlabel true 1 2\n@DATA\n"
                 "1,?,3:4,5,6:2\n7,8:-9,?:1\n")
    got = read_ts(path)
    assert_series(got.series, [[[1, NAN, 3], [4, 5, 6]], [[7, 8], [-9, NAN]]])
    assert got.labels == ["2", "1"] and got.class_names == ["1", "2"]
    assert got.channel_names == ["0", "1"]


def test_ts_timestamps_negative_and_integer_values(tmp_path):
    path = write(tmp_path, "stamped.ts", "@timeStamps true\n@classLabel true up down\n@data\n"
                 "(2004-08-10 18:00:00,1130.0),(2004-08-10 19:00:00,-5),"
                 "(2004-08-10 20:00:00,?):(1,2),(2,-3.5e1),(3,7):up\n"
                 "(1, 12):(1,-1):down\n")
    got = read_ts(path)
    assert_series(got.series, [[[1130, -5, NAN], [2, -35, 7]], [[12], [-1]]])
    assert got.labels == ["up", "down"]


def test_ts_unlabelled_and_regression_target(tmp_path):
    unlabelled = read_ts(write(tmp_path, "u.ts", "@classLabel false\n@data\n1,2:3,4\n"))
    assert unlabelled.labels is None and unlabelled.class_names is None
    assert_series(unlabelled.series, [[[1, 2], [3, 4]]])
    target = read_ts(write(tmp_path, "r.ts", "@targetLabel true\n@data\n1,2:0.25\n3,4:-1\n"))
    # a regression target (the value after the last `:`) is kept, marked as a target
    assert target.labels == ["0.25", "-1"] and target.class_names is None and target.targets
    assert not unlabelled.targets
    assert_series(target.series, [[[1, 2]], [[3, 4]]])


BAD_TS = {
    "flag": ("@missing maybe\n@data\n1,2\n", r"bad\.ts line 1: @missing must be followed by true"),
    "no labels": ("@classLabel true\n@data\n1,2:a\n",
                  r"bad\.ts line 1: @classLabel true must be followed by the class labels"),
    "no data line": ("@problemName x\n@classLabel false\n", r"bad\.ts: no @data line"),
    "case before data": ("@classLabel false\n1,2,3\n@data\n", r"bad\.ts line 2: a case before"),
    "dimensions": ("@dimensions two\n@data\n1,2\n", r"bad\.ts line 1: @dimensions must be a pos"),
    "missing label": ("@classLabel true a b\n@data\n1,2:3,4:a\n1,2:3,4\n",
                      r"bad\.ts line 4: no label after the last ':'"),
    "first line without label": ("@classLabel true a b\n@data\n1,2:3,4\n",
                                 r"bad\.ts line 3: no label after the last ':'"),
    "undeclared label": ("@classLabel true a b\n@data\n1,2:a\n3,4:c\n",
                         r"bad\.ts line 4: label 'c' is not among the classes declared"),
    "channel count": ("@classLabel true a\n@data\n1,2:3,4:a\n5,6:a\n",
                      r"bad\.ts line 4: 1 channels, expected 2 \(as line 3\)"),
    "dimensions mismatch": ("@dimensions 3\n@classLabel false\n@data\n1,2:3,4\n",
                            r"bad\.ts line 4: 2 channels, expected 3 \(as @dimensions\)"),
    "ragged case": ("@classLabel false\n@data\n1,2,3:4,5\n",
                    r"bad\.ts line 3: channels of different lengths \[3, 2\]"),
    "not a number": ("@classLabel true a\n@data\n1,2:3,4:a\n5,6:7,abc:a\n",
                     r"bad\.ts line 4, channel 1, step 1: 'abc' is not a number"),
    "empty value": ("@classLabel false\n@data\n1,,3\n", r"bad\.ts line 3, channel 0, step 1: ''"),
    "empty file": ("", r"bad\.ts is empty"),
    "no cases": ("@classLabel false\n@data\n\n# nothing\n", r"bad\.ts: no cases after the @data"),
}


@pytest.mark.parametrize("text, message", BAD_TS.values(), ids=BAD_TS.keys())
def test_ts_bad_inputs(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_ts(write(tmp_path, "bad.ts", text))


def test_ts_archives(shared_data):
    folder = shared_data / "timeseries"
    cases = {  # name: (train cases, test cases, channels, lengths, classes)
        "BasicMotions": (40, 40, 6, {100}, ["Standing", "Running", "Walking", "Badminton"]),
        "GunPoint": (50, 150, 1, {150}, ["1", "2"]),
        "JapaneseVowels": (270, 370, 12, set(range(7, 30)), [str(c) for c in range(1, 10)]),
    }
    for name, (n_train, n_test, channels, lengths, classes) in cases.items():
        train_path = folder / name / f"{name}_TRAIN.ts"
        if not train_path.is_file():
            pytest.skip(f"{train_path} not found")
        test_path = readers.test_twin(train_path)
        assert test_path == folder / name / f"{name}_TEST.ts"
        train, test = read_ts(train_path), read_ts(test_path)
        assert (len(train.series), len(test.series)) == (n_train, n_test)
        assert train.class_names == test.class_names == classes
        assert set(train.labels) == set(test.labels) == set(classes)
        for got in (train, test):
            assert {s.shape[0] for s in got.series} == {channels}
            assert {s.shape[1] for s in got.series} <= lengths
            assert all(s.dtype == np.float32 and np.isfinite(s).all() for s in got.series)
    vowels = read_ts(folder / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts")
    both = [s.shape[1] for s in vowels.series + read_ts(folder / "JapaneseVowels" /
                                                        "JapaneseVowels_TEST.ts").series]
    assert (min(both), max(both)) == (7, 29)
    # first value of the first case, as in the file
    np.testing.assert_allclose(vowels.series[0][:2, 0], [1.860936, -0.207383], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Dispatch and twins


def test_read_series_dispatch_and_errors(tmp_path):
    cfg = TimeSeriesDataConfig()
    ts = write(tmp_path, "a.ts", "@classLabel false\n@data\n1,2\n")
    assert_series(read_series(ts, cfg).series, [[[1, 2]]])
    np.save(tmp_path / "a.npy", np.ones((2, 3), dtype=np.float32))
    assert len(read_series(tmp_path / "a.npy", cfg).series) == 2
    with pytest.raises(DataError, match=r"a\.xlsx: unknown file type; supported: \.ts, \.csv"):
        read_series(write(tmp_path, "a.xlsx", "x"), cfg)
    with pytest.raises(DataError, match=r"missing\.ts: no such file"):
        read_series(tmp_path / "missing.ts", cfg)
    with pytest.raises(ConfigError, match=r"\.ts files hold no actions"):
        read_series(ts, TimeSeriesDataConfig(action_columns=["force"]))


def test_test_twin(tmp_path):
    train = write(tmp_path, "Data_train.csv", "")
    assert readers.test_twin(train) is None  # no twin yet
    twin = write(tmp_path, "DATA_TEST.csv", "")
    assert readers.test_twin(train) == twin
    assert readers.test_twin(write(tmp_path, "training.csv", "")) is None


# ---------------------------------------------------------------------------------------------
# Tables


def test_wide_csv(tmp_path):
    path = write(tmp_path, "wide.csv", "id,t0,t1,t2,label\n7,1,2,3,a\n\n8,,?,NaN,1\n")
    got = read_table(path, TimeSeriesDataConfig())
    assert_series(got.series, [[[1, 2, 3]], [[NAN, NAN, NAN]]])
    assert got.labels == ["a", "1"] and got.channel_names == ["0"]
    assert got.names == ["wide.csv id=7", "wide.csv id=8"]
    bare = write(tmp_path, "bare.csv", "t0,t1\n1,2\n\n3,4\n")
    unlabelled = read_table(bare, TimeSeriesDataConfig(layout="wide"))
    assert unlabelled.labels is None
    assert unlabelled.names == ["bare.csv line 2", "bare.csv line 4"]  # the blank line counts
    assert_series(unlabelled.series, [[[1, 2]], [[3, 4]]])


LONG = ("id,time,subject,x,y,force,label\n"
        "b,2,s1,20,21,0.5,B\n"
        "a,1,s2,1,11,1,A\n"
        "b,1,s1,10,?,0,B\n"
        "a,0,s2,0,,-1,A\n"
        "a,2,s2,2,12,1,A\n")


def test_long_csv(tmp_path):
    path = write(tmp_path, "long.csv", LONG)
    got = read_table(path, TimeSeriesDataConfig(action_columns=["force"]))  # layout auto -> long
    assert got.channel_names == ["x", "y"]  # the text column `subject` is no channel
    assert_series(got.series, [[[10, 20], [NAN, 21]], [[0, 1, 2], [NAN, 11, 12]]])
    assert got.action_names == ["force"]
    assert_series(got.actions, [[[0, 0.5]], [[-1, 1, 1]]])
    assert got.labels == ["B", "A"]
    assert got.names == ["long.csv id=b", "long.csv id=a"]
    only_y = read_table(path, TimeSeriesDataConfig(layout="long", value_columns=["y"],
                                                   label_column=None))
    assert only_y.labels is None and only_y.actions is None
    assert_series(only_y.series, [[[NAN, 21]], [[NAN, 11, 12]]])


def test_tsv_and_parquet(tmp_path):
    tsv = write(tmp_path, "long.tsv", LONG.replace(",", "\t"))
    expected = read_table(tsv, TimeSeriesDataConfig(action_columns=["force"]))
    assert_series(expected.series, [[[10, 20], [NAN, 21]], [[0, 1, 2], [NAN, 11, 12]]])
    if importlib.util.find_spec("pyarrow") is None:
        pytest.skip("pyarrow is not installed")
    frame = pd.DataFrame({"id": [3, 3, 4], "time": [1, 0, 0], "v": [1.0, NAN, 5.0],
                          "label": [1, 1, 2]})
    frame.to_parquet(tmp_path / "long.parquet")
    got = read_table(tmp_path / "long.parquet", TimeSeriesDataConfig())
    assert_series(got.series, [[[NAN, 1]], [[5]]])
    assert got.labels == ["1", "2"] and got.names == ["long.parquet id=3", "long.parquet id=4"]
    frame.assign(v=["1", "x", "2"]).to_parquet(tmp_path / "bad.pq")
    with pytest.raises(DataError, match=r"bad\.pq row 2, column 'v': 'x' is not a number"):
        read_table(tmp_path / "bad.pq", TimeSeriesDataConfig())


BAD_TABLES = {
    "wide value": ("id,t0,t1,label\n1,1,2,a\n2,3,abc,b\n", {},
                   r"bad\.csv line 3, column 't1': 'abc' is not a number"),
    "long value": (LONG.replace("0,,-1", "0,oops,-1"), {},
                   r"bad\.csv line 5, column 'y': 'oops' is not a number"),
    "varying label": (LONG.replace("a,2,s2,2,12,1,A", "a,2,s2,2,12,1,Z"), {},
                      r"bad\.csv line 6: label 'Z' in column 'label' differs from 'A' earlier in "
                      r"series id=a"),
    "missing label": ("id,t0,label\n1,1,a\n2,2,\n", {}, r"bad\.csv line 3: no label in column"),
    "missing value column": (LONG, {"value_columns": ["x", "z"]},
                             r"bad\.csv: no column 'z' \(data\.value_columns\); the columns are: "
                             r"id, time, subject"),
    "missing time column": ("id,x\n1,2\n", {"layout": "long"},
                            r"bad\.csv: no column 'time' \(data\.id_column, data\.time_column\)"),
    "missing action column": (LONG, {"action_columns": ["torque"]},
                              r"bad\.csv: no column 'torque' \(data\.action_columns\)"),
    "empty file": ("", {}, r"bad\.csv is empty"),
    "header only": ("id,t0\n", {}, r"bad\.csv: no data rows"),
}


@pytest.mark.parametrize("text, overrides, message", BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_table_bad_inputs(tmp_path, text, overrides, message):
    with pytest.raises(DataError, match=message):
        read_table(write(tmp_path, "bad.csv", text), TimeSeriesDataConfig(**overrides))


def test_table_config_errors(tmp_path):
    path = write(tmp_path, "wide.csv", "t0,t1\n1,2\n")
    with pytest.raises(ConfigError, match="data.layout must be one of"):
        read_table(path, TimeSeriesDataConfig(layout="tall"))
    with pytest.raises(ConfigError, match="data.action_columns needs a long table"):
        read_table(path, TimeSeriesDataConfig(action_columns=["t1"]))


# ---------------------------------------------------------------------------------------------
# Arrays


def test_npy_shapes(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    x[1, 2, 3] = NAN
    np.save(tmp_path / "x.npy", x)
    got = read_arrays(tmp_path / "x.npy")
    assert_series(got.series, x.tolist())
    assert got.labels is None and got.channel_names == ["0", "1", "2"]
    assert got.names == ["x.npy [0]", "x.npy [1]"]
    np.save(tmp_path / "uni.npy", np.arange(6, dtype=np.int64).reshape(3, 2))
    assert_series(read_arrays(tmp_path / "uni.npy").series, [[[0, 1]], [[2, 3]], [[4, 5]]])


def test_npz_with_labels_actions_names(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 2, 5)).astype(np.float32)
    actions = np.arange(15, dtype=np.float32).reshape(3, 1, 5)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0]), actions=actions,
             channel_names=np.array(["pos", "vel"]))
    got = read_arrays(tmp_path / "d.npz")
    assert_series(got.series, x.tolist())
    assert_series(got.actions, actions.tolist())
    assert got.labels == ["0", "1", "0"]
    assert got.channel_names == ["pos", "vel"] and got.action_names == ["0"]
    np.savez(tmp_path / "one.npz", series=x)
    assert_series(read_arrays(tmp_path / "one.npz").series, x.tolist())


def test_array_bad_inputs(tmp_path):
    x = np.zeros((3, 2, 5), dtype=np.float32)
    bad = {
        "flat.npy": (np.zeros(4), r"flat\.npy: x must be \[N, C, T\] or \[N, T\], got shape \[4\]"),
        "deep.npy": (np.zeros((1, 2, 3, 4)), r"deep\.npy: x must be .* got shape \[1, 2, 3, 4\]"),
        "ragged.npy": (np.array([np.zeros(2), np.zeros(3)], dtype=object),
                       r"ragged\.npy: cannot read the arrays .* padded with NaN"),
        "text.npy": (np.array([["a", "b"]]), r"text\.npy: x must hold numbers"),
    }
    for name, (array, message) in bad.items():
        np.save(tmp_path / name, array, allow_pickle=True)
        with pytest.raises(DataError, match=message):
            read_arrays(tmp_path / name)
    npz = {
        "two.npz": ({"a": x, "b": x}, r"two\.npz: no array 'x' among a, b"),
        "y.npz": ({"x": x, "y": np.zeros(2)}, r"y\.npz: y must hold one label per series"),
        "act.npz": ({"x": x, "actions": np.zeros((3, 1, 4))}, r"act\.npz: actions must be \[N=3"),
        "names.npz": ({"x": x, "channel_names": np.array(["a"])},
                      r"names\.npz: channel_names must hold 2 names"),
    }
    for name, (arrays, message) in npz.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataError, match=message):
            read_arrays(tmp_path / name)
