"""Read time series from UCR/UEA `.ts` files, CSV/TSV/Parquet tables and `.npy`/`.npz` arrays
into a `SeriesSet` (one float32 `[C, T_i]` per series, NaN = missing); every `DataError` names
the file and the line, row or column at fault.

* `.ts` (sktime/aeon): `#` comments, `@key value` headers (case-insensitive, unknown keys
  ignored), then after `@data` one case per line: channels split by `:`, values by `,`, `?` =
  missing, the label after the last `:` (`@classLabel true ...`, or the `@targetLabel true`
  regression target, kept as a string); `(time,value)` pairs keep the value. The values of all
  cases are parsed in one pandas pass.
* tables: "wide" (a row per univariate series, a column per step) or "long" (a row per step of
  series `id_column`, ordered by `time_column`); empty cells, `?` and NaN are missing.
* arrays: `.npy` `[N, C, T]` / `[N, T]`; `.npz` with `x` (or one array), optional `y` `[N]`,
  `actions` `[N, A, T]` and `channel_names` `[C]`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np
import pandas as pd

from polyjepa.errors import ConfigError, DataError
from polyjepa.modalities.timeseries.config import TimeSeriesDataConfig

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
ARRAY_SUFFIXES = (".npy", ".npz")
LAYOUTS = ("wide", "long", "auto")
TABLE_MISSING = ["", "?", "nan", "NaN"]
TS_MISSING = ["?", "nan", "NaN"]
TS_FLAGS = ("timestamps", "missing", "univariate", "equallength", "classlabel", "targetlabel")
TS_STAMPED = re.compile(r"\([^(),]*,([^(),]*)\)")  # "(time,value)" -> "value"
TRAIN_WORD = re.compile(r"(?<![a-z])train(?![a-z])", re.IGNORECASE)


@dataclass
class SeriesSet:
    """Series as read from one source, before alignment and scaling."""

    series: list[np.ndarray]  # one float32 [C, T_i] per series; NaN = missing value
    labels: list[str] | None  # one per series; None when the source has no labels
    actions: list[np.ndarray] | None  # one float32 [A, T_i] per series (same T_i), or None
    channel_names: list[str]  # C names ("0".."C-1" when the source has none)
    action_names: list[str]  # A names ([] without actions)
    names: list[str]  # per series, where it came from, for messages: "x.ts line 12", "d.csv id=7"
    class_names: list[str] | None  # the declared class order (.ts `@classLabel true ...`)
    source: str  # the path, for messages
    targets: bool = False  # the source declares its labels regression targets (`@targetLabel`)


def concat_sets(sets: list[SeriesSet]) -> SeriesSet:
    """Series of several sources in one set (e.g. the files a glob pattern matches); labels only
    when every source has them, actions only when every source has the same ones.

    Raises:
        DataError: the sources have different channels.
    """
    first = sets[0]
    if len(sets) == 1:
        return first
    for other in sets[1:]:
        if other.channel_names != first.channel_names:
            raise DataError(f"{other.names[0]}: channels {other.channel_names} differ from "
                            f"{first.channel_names} of {first.names[0]}")
    labelled = all(s.labels is not None for s in sets)
    acting = all(s.actions is not None and s.action_names == first.action_names for s in sets)
    return SeriesSet(
        series=[x for s in sets for x in s.series],
        labels=[y for s in sets for y in s.labels or []] if labelled else None,
        actions=[a for s in sets for a in s.actions or []] if acting else None,
        channel_names=first.channel_names,
        action_names=first.action_names if acting else [],
        names=[n for s in sets for n in s.names],
        class_names=None,
        source=f"{first.source} and {len(sets) - 1} more",
    )


def read_series(path: Path, cfg: TimeSeriesDataConfig) -> SeriesSet:
    """Read `path` with the reader its suffix calls for.

    Raises:
        ConfigError: `data.action_columns` is set for a `.ts` or `.npy` file.
        DataError: unknown suffix, or see the readers.
    """
    suffix = path.suffix.lower()
    if suffix in (".ts", ".npy") and cfg.action_columns:
        raise ConfigError(f"data.action_columns is set but {suffix} files hold no actions ({path}); "
                          "use a long table or an .npz file with `actions`")
    if suffix == ".ts":
        return read_ts(path)
    if suffix in TABLE_SUFFIXES:
        return read_table(path, cfg)
    if suffix in ARRAY_SUFFIXES:
        return read_arrays(path)
    raise DataError(f"{path}: unknown file type; supported: .ts, "
                    f"{', '.join(TABLE_SUFFIXES + ARRAY_SUFFIXES)}")


def test_twin(path: Path) -> Path | None:
    """The `_TEST` file beside a `_TRAIN` file (`X_TRAIN.ts` -> `X_TEST.ts`, any case), or None."""
    matches = list(TRAIN_WORD.finditer(path.name))
    if not matches:
        return None
    start, end = matches[-1].span()
    wanted = (path.name[:start] + "test" + path.name[end:]).lower()
    return next((p for p in sorted(path.parent.iterdir()) if p.name.lower() == wanted), None)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes)")


def _to_numbers(raw: pd.DataFrame, missing: list[str]) -> tuple[np.ndarray, tuple[int, int] | None]:
    """`raw` `[R, K]` as float32 (missing markers -> NaN) and the (row, column) position of its
    first cell that is not a number, or None."""
    numbers = raw.apply(pd.to_numeric, errors="coerce")
    bad = (numbers.isna() & raw.notna() & ~raw.isin(missing)).to_numpy()
    return numbers.to_numpy(np.float32), (tuple(np.argwhere(bad)[0]) if bad.any() else None)


# ---------------------------------------------------------------------------------------------
# .ts files


class _Case(NamedTuple):
    line: int  # 1-based line number
    body: str  # the values: channels joined by ":", values by ","
    lengths: list[int]  # values per channel
    label: str | None


def read_ts(path: Path) -> SeriesSet:
    """Read a UCR/UEA `.ts` file (format in the module docstring).

    Raises:
        DataError: malformed header, no `@data` line or no cases, a case without its label, with
            another channel count than the others, with channels of different lengths, with an
            undeclared class label or with a value that is not a number (file and line named).
    """
    _check_file(path)
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    header, first = _ts_header(lines, path)
    classes = _ts_classes(header, path)
    labelled = classes is not None or _ts_flag(header, "targetlabel")
    stamped = _ts_flag(header, "timestamps")
    cases = [_ts_case(line, number, stamped, labelled, path)
             for number, line in enumerate(lines[first:], first + 1)
             if line.strip() and not line.startswith("#")]
    if not cases:
        raise DataError(f"{path}: no cases after the @data line")
    channels = _check_ts_cases(cases, _ts_dimensions(header, path), classes, path)
    # every case has a label (checked just above): one of the declared classes, or a target
    labels = cast(list[str], [c.label for c in cases]) if labelled else None
    return SeriesSet(  # @targetLabel: regression targets (`polyjepa.targets`, data.task)
        series=_ts_values(cases, path), labels=labels,
        actions=None, channel_names=[str(c) for c in range(channels)], action_names=[],
        names=[f"{path.name} line {c.line}" for c in cases], class_names=classes, source=str(path),
        targets=labelled and classes is None)


def _ts_header(lines: list[str], path: Path) -> tuple[dict[str, tuple[int, list[str]]], int]:
    """The `@key values...` lines (lower-cased key -> (line number, values)) and the index of
    the line after `@data`."""
    header: dict[str, tuple[int, list[str]]] = {}
    for index, line in enumerate(lines):
        if not line.strip() or line.startswith("#"):
            continue
        key, *values = line.split()
        if not key.startswith("@"):
            raise DataError(f"{path} line {index + 1}: a case before the @data line")
        name = key[1:].lower()
        if name == "data":
            return header, index + 1
        if name in TS_FLAGS and (not values or values[0].lower() not in ("true", "false")):
            raise DataError(f"{path} line {index + 1}: {key} must be followed by true or false, "
                            f"got {' '.join(values)!r}")
        header[name] = (index + 1, values)
    raise DataError(f"{path}: no @data line (a .ts file lists its cases after @data)")


def _ts_flag(header: dict[str, tuple[int, list[str]]], name: str) -> bool:
    return name in header and header[name][1][0].lower() == "true"


def _ts_classes(header: dict[str, tuple[int, list[str]]], path: Path) -> list[str] | None:
    """The classes declared by `@classLabel true ...`, or None."""
    if not _ts_flag(header, "classlabel"):
        return None
    line, values = header["classlabel"]
    if len(values) < 2:
        raise DataError(f"{path} line {line}: @classLabel true must be followed by the class labels")
    return values[1:]


def _ts_dimensions(header: dict[str, tuple[int, list[str]]], path: Path) -> int | None:
    """The channel count of `@dimensions` (or `@dimension`), or None."""
    key = "dimensions" if "dimensions" in header else "dimension"
    if key not in header:
        return None
    line, values = header[key]
    if len(values) != 1 or not values[0].isdigit() or int(values[0]) == 0:
        raise DataError(f"{path} line {line}: @{key} must be a positive integer, got {values}")
    return int(values[0])


def _ts_case(line: str, number: int, stamped: bool, labelled: bool, path: Path) -> _Case:
    """Split one case line into its values and label, checking the channel lengths agree."""
    line = line.strip()
    if stamped:
        line = TS_STAMPED.sub(r"\1", line)
    label = None
    if labelled:
        line, colon, label = line.rpartition(":")
        label = label.strip()
        if not colon or "," in label:
            raise DataError(f"{path} line {number}: no label after the last ':' "
                            "(the line ends with values)")
    body = line.replace(" ", "")
    lengths = [channel.count(",") + 1 for channel in body.split(":")]
    if len(set(lengths)) > 1:
        raise DataError(f"{path} line {number}: channels of different lengths {lengths}; all "
                        "channels of a case need the same length")
    return _Case(number, body, lengths, label)


def _check_ts_cases(cases: list[_Case], dimensions: int | None, classes: list[str] | None,
                    path: Path) -> int:
    """The channel count (`@dimensions`, else the first case's), checked for every case, as
    are the labels against the declared `classes`."""
    channels = dimensions or len(cases[0].lengths)
    origin = "@dimensions" if dimensions else f"line {cases[0].line}"
    declared = set(classes or [])
    for case in cases:
        if len(case.lengths) != channels:
            raise DataError(f"{path} line {case.line}: {len(case.lengths)} channels, expected "
                            f"{channels} (as {origin})")
        if classes is not None and case.label not in declared:
            raise DataError(f"{path} line {case.line}: label {case.label!r} is not among the "
                            f"classes declared by @classLabel: {' '.join(classes)}")
    return channels


def _ts_values(cases: list[_Case], path: Path) -> list[np.ndarray]:
    """The values of every case, one float32 `[C, T_i]` each, parsed in one pandas pass."""
    text = "\n".join(case.body for case in cases).replace(":", "\n").replace(",", "\n")
    try:
        flat = pd.read_csv(io.StringIO(text), header=None, names=["v"], dtype=np.float32,
                           na_values=TS_MISSING, keep_default_na=False, skip_blank_lines=False,
                           engine="c")["v"].to_numpy()
    except ValueError:
        raise _ts_bad_value(cases, path) from None
    ends = np.cumsum([sum(case.lengths) for case in cases])[:-1]
    return [values.reshape(len(case.lengths), -1)
            for values, case in zip(np.split(flat, ends), cases, strict=True)]


def _ts_bad_value(cases: list[_Case], path: Path) -> DataError:
    """The error naming the first value of `cases` that is not a number."""
    for case in cases:
        raw = pd.DataFrame([channel.split(",") for channel in case.body.split(":")])  # [C, T]
        bad = _to_numbers(raw, TS_MISSING)[1]
        if bad is not None:
            channel, step = bad
            return DataError(f"{path} line {case.line}, channel {channel}, step {step}: "
                             f"{raw.iat[channel, step]!r} is not a number")
    return DataError(f"{path}: some values are not numbers")


# ---------------------------------------------------------------------------------------------
# Tables


def read_table(path: Path, cfg: TimeSeriesDataConfig) -> SeriesSet:
    """Read a CSV/TSV/Parquet table in `cfg.layout` (format in the module docstring).

    Raises:
        ConfigError: unknown layout; actions asked of a wide table.
        DataError: empty file, a configured column is missing, a value is not a number, a label
            is missing or varies within a long-form series (file, row and column named).
    """
    if cfg.layout not in LAYOUTS:
        raise ConfigError(f"data.layout must be one of {', '.join(LAYOUTS)}, got {cfg.layout!r}")
    frame = _read_frame(path, [c for c in (cfg.id_column, cfg.label_column) if c])
    long = cfg.layout == "long" or (
        cfg.layout == "auto" and {cfg.id_column, cfg.time_column} <= set(frame.columns))
    return _read_long(frame, cfg, path) if long else _read_wide(frame, cfg, path)


def _read_frame(path: Path, text_columns: list[str]) -> pd.DataFrame:
    """The table, string column names, indexed by its 1-based row numbers as in the file
    (`index.name` "line" for text files, whose header is line 1, else "row")."""
    _check_file(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",",
                                dtype=dict.fromkeys(text_columns, str), na_values=TABLE_MISSING,
                                keep_default_na=False, skip_blank_lines=False)
            frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")
            frame = frame.dropna(how="all")
    except Exception as err:  # pandas and pyarrow raise their own types (ImportError: no pyarrow)
        raise DataError(f"{path}: not a readable table ({str(err).strip()})") from err
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _require(frame: pd.DataFrame, columns: list[str], path: Path, key: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(f"{path}: no column {', '.join(map(repr, absent))} ({key}); the columns "
                        f"are: {', '.join(frame.columns)}")


def _numbers(frame: pd.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    """`frame[columns]` as float32 `[R, K]`, missing markers as NaN."""
    numbers, bad = _to_numbers(frame[columns], TABLE_MISSING)
    if bad is not None:
        row, col = bad
        raise DataError(f"{path} {frame.index.name} {frame.index[row]}, column {columns[col]!r}: "
                        f"{frame[columns[col]].iat[row]!r} is not a number")
    return numbers


def _labels(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """Column `column` as strings; a missing label is an error."""
    values = frame[column]
    if values.isna().any():
        raise DataError(f"{path} {frame.index.name} {values.index[values.isna()][0]}: no label in "
                        f"column {column!r}")
    return values.astype(str)


def _read_wide(frame: pd.DataFrame, cfg: TimeSeriesDataConfig, path: Path) -> SeriesSet:
    """One univariate series `[1, T]` per row; T = the columns but the id and label."""
    if cfg.action_columns:
        raise ConfigError(f"data.action_columns needs a long table (id, time, channels, actions); "
                          f"{path} is read as wide")
    label = cfg.label_column if cfg.label_column in frame.columns else None
    keys = [c for c in (cfg.id_column, label) if c is not None and c in frame.columns]
    steps = [c for c in frame.columns if c not in keys]
    if not steps:
        raise DataError(f"{path}: no time-step columns besides {', '.join(keys)}")
    names = (f"id={i}" for i in frame[cfg.id_column]) if cfg.id_column in frame.columns else (
        f"{frame.index.name} {r}" for r in frame.index)
    return SeriesSet(
        series=list(_numbers(frame, steps, path)[:, None, :]),
        labels=_labels(frame, label, path).tolist() if label is not None else None,
        actions=None, channel_names=["0"], action_names=[],
        names=[f"{path.name} {name}" for name in names], class_names=None, source=str(path))


def _read_long(frame: pd.DataFrame, cfg: TimeSeriesDataConfig, path: Path) -> SeriesSet:
    """One series per id, its rows ordered by time; series in order of first appearance."""
    _require(frame, [cfg.id_column, cfg.time_column], path, "data.id_column, data.time_column")
    _require(frame, cfg.action_columns, path, "data.action_columns")
    label = cfg.label_column if cfg.label_column in frame.columns else None
    others = {cfg.id_column, cfg.time_column, label, *cfg.action_columns}
    channels = cfg.value_columns or [c for c in frame.columns if c not in others
                                     and pd.to_numeric(frame[c], errors="coerce").notna().any()]
    _require(frame, channels, path, "data.value_columns")
    if not channels:
        raise DataError(f"{path}: no numeric value columns; set data.value_columns")
    codes, ids = pd.factorize(frame[cfg.id_column])
    order = np.lexsort((pd.factorize(frame[cfg.time_column], sort=True)[0], codes))
    frame, codes = frame.iloc[order], codes[order]
    ends = np.flatnonzero(np.diff(codes)) + 1

    def split(columns: list[str]) -> list[np.ndarray]:
        return [np.ascontiguousarray(part.T) for part in np.split(_numbers(frame, columns, path), ends)]

    return SeriesSet(
        series=split(channels),
        labels=_long_labels(frame, label, codes, ids, cfg.id_column, path) if label else None,
        actions=split(cfg.action_columns) if cfg.action_columns else None,
        channel_names=list(channels), action_names=list(cfg.action_columns),
        names=[f"{path.name} {cfg.id_column}={i}" for i in ids], class_names=None, source=str(path))


def _long_labels(frame: pd.DataFrame, column: str, codes: np.ndarray, ids: pd.Index,
                 id_column: str, path: Path) -> list[str]:
    """The label of each series (rows grouped by `codes`), checked constant within it."""
    labels = _labels(frame, column, path)
    first = labels.groupby(codes, sort=True).first().to_numpy()
    differs = (labels.to_numpy() != first[codes]).nonzero()[0]
    if len(differs):
        row = differs[0]
        raise DataError(f"{path} {frame.index.name} {frame.index[row]}: label {labels.iat[row]!r} "
                        f"in column {column!r} differs from {first[codes[row]]!r} earlier in series "
                        f"{id_column}={ids[codes[row]]}; a series has one label")
    return first.tolist()


# ---------------------------------------------------------------------------------------------
# Arrays


def read_arrays(path: Path) -> SeriesSet:
    """Read `.npy` `[N, C, T]` / `[N, T]` or `.npz` (`x`, optional `y`, `actions`, `channel_names`).

    Raises:
        DataError: unreadable or object arrays, no `x`, wrong shapes or non-numeric values.
    """
    _check_file(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays = {"x": loaded}
        else:
            with loaded:
                arrays = dict(loaded.items())
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read the arrays ({err}); variable-length series must be "
                        "stored padded with NaN, as float [N, C, T]") from None
    x = _series_array(arrays, path, "x")
    x = x[:, None, :] if x.ndim == 2 else x
    n, channels, length = x.shape
    actions = _series_array(arrays, path, "actions") if "actions" in arrays else None
    if actions is not None and (actions.ndim != 3 or actions.shape[::2] != (n, length)):
        raise DataError(f"{path}: actions must be [N={n}, A, T={length}], got {list(actions.shape)}")
    labels = arrays.get("y")
    if labels is not None and labels.shape != (n,):
        raise DataError(f"{path}: y must hold one label per series, shape [{n}], got "
                        f"{list(labels.shape)}")
    return SeriesSet(
        series=list(x.astype(np.float32)),
        labels=labels.astype(str).tolist() if labels is not None else None,
        actions=list(actions.astype(np.float32)) if actions is not None else None,
        channel_names=_channel_names(arrays, channels, path),
        action_names=[str(a) for a in range(len(actions[0]))] if actions is not None else [],
        names=[f"{path.name} [{i}]" for i in range(n)], class_names=None, source=str(path))


def _series_array(arrays: dict[str, np.ndarray], path: Path, key: str) -> np.ndarray:
    """The numeric array `key` (`x`: or the only array) `[N, C, T]` or `[N, T]`."""
    if key == "x" and key not in arrays:
        if len(arrays) != 1:
            raise DataError(f"{path}: no array 'x' among {', '.join(arrays)}")
        key = next(iter(arrays))
    array = arrays[key]
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} must hold numbers, it holds {array.dtype}")
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise DataError(f"{path}: {key} must be [N, C, T] or [N, T], got shape {list(array.shape)}")
    return array


def _channel_names(arrays: dict[str, np.ndarray], channels: int, path: Path) -> list[str]:
    """`channel_names` as strings, or "0".."C-1" without it."""
    if "channel_names" not in arrays:
        return [str(c) for c in range(channels)]
    names = arrays["channel_names"]
    if names.shape != (channels,):
        raise DataError(f"{path}: channel_names must hold {channels} names, got shape "
                        f"{list(names.shape)}")
    return names.astype(str).tolist()
