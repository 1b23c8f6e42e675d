"""Read tables (CSV/TSV/Parquet, bundled or from scikit-learn), check them, and encode them.

Every table becomes a `pd.DataFrame` whose columns are named by strings (header names, or
"0", "1", ... when a file has no header) and whose index holds 1-based row numbers as they
appear in the file (`index.name` is "line" for text files, where the header is line 1, and
"row" otherwise), so that every error can point at the offending row. Columns hold either
floats (numeric features, NaN = missing) or strings (categorical features and the label,
`<NA>` = missing).

`TabularEncoder` is fitted on the training rows only and turns frames into `TabularTensors`:
standardised numbers `[N, F_num]`, category indices `[N, F_cat]` and class indices `[N]`.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import logging
import lzma
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np
import pandas as pd
import torch
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import Dataset

from polyjepa.config import DataConfig
from polyjepa.errors import ConfigError, DataError
from polyjepa.paths import resolve_path
from polyjepa.targets import as_targets, decide_task

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent / "data"
SKLEARN_LOADERS = {
    "breast_cancer": sk_datasets.load_breast_cancer,
    "wine": sk_datasets.load_wine,
    "iris": sk_datasets.load_iris,
    "digits": sk_datasets.load_digits,
}
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".data")
COMPRESSION_OPENERS: dict[str, Callable[..., io.BufferedIOBase]] = {
    ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
PARQUET_SUFFIXES = (".parquet", ".pq")
ARRAY_SUFFIX = ".npy"  # a 2-D array of numbers, columns named by position ("0", "1", ...)
DELIMITERS = ("\t", ";", "|", ",")  # sniffing prefers earlier ones on ties
NUMBER_PATTERN = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|[+-]?inf(?:inity)?"  # case-insensitive
NAN_PATTERN = r"[+-]?nan"
NUMERIC_FRACTION = 0.9  # a column is numeric when at least this share of its values are numbers
SNIFF_BYTES = 65536
SNIFF_LINES = 50
LIST_LIMIT = 30


@dataclass
class TabularDataConfig(DataConfig):
    """The `data:` section of a tabular recipe."""

    # CSV/TSV/.gz/Parquet file, "builtin:NAME" (bundled with polyjepa) or "sklearn:NAME"
    # (breast_cancer, wine, iris, digits); relative paths are looked up under the data root.
    path_keys = ("path", "test_path")
    dataset_keys = {"test_path": None, "target": -1, "categorical": None, "delimiter": None,
                    "header": None}

    path: str = "builtin:adult-train"
    # Held-out file with the same columns; None -> a seeded stratified split of `path`.
    test_path: str | None = "builtin:adult-test"
    # Share of `path` held out when `test_path` is None.
    test_fraction: float = 0.2
    # Seed of that split.
    split_seed: int = 0
    # Label column: a header name, or an integer position (negative counts from the end);
    # null: the table has none (embedding unlabelled rows; training needs one).
    target: str | int | None = -1
    # Field separator; None -> sniff from ",", ";", "\t", "|" (spaces around fields are stripped).
    delimiter: str | None = None
    # Whether the first line holds column names; None -> detect.
    header: bool | None = None
    # Categorical feature columns (names or positions); the others must be numeric.
    # None -> detect: a column is numeric when >= 90% of its values are numbers.
    categorical: list[str | int] | None = None
    # Strings that mean "missing" (compared after stripping spaces); nothing else does, so a
    # literal "nan" or "inf" in a numeric column is an error, not a silent missing value.
    missing_values: list[str] = field(default_factory=lambda: ["?", ""])
    # A row that fails to load during training: "raise" (naming it) or "skip" (counted). Tabular
    # rows are validated when read, so this matters for plugins that decode lazily.
    on_error: str = "raise"


@dataclass
class TabularTensors:
    """An encoded table.

    Attributes:
        num: `[N, F_num]` float32, standardised with training statistics; missing -> 0 (the
            training mean).
        cat: `[N, F_cat]` int64 category index, 0 = missing or unseen category.
        y: `[N]` int64 class index, or float32 regression target (NaN: none).
    """

    num: Tensor
    cat: Tensor
    y: Tensor


class KnownColumns(NamedTuple):
    """A run's training table: its label column and all its columns in order (label included)."""

    target: str
    columns: list[str]

    @property
    def features(self) -> list[str]:
        return [c for c in self.columns if c != self.target]


# ---------------------------------------------------------------------------------------------
# Reading


def read_frame(spec: str, cfg: TabularDataConfig, root: Path | None, field: str,
               known: KnownColumns | None = None) -> pd.DataFrame:
    """Read and check one table; with `known`, a run's training columns, the table may lack the
    label column (unlabelled rows, `[N, F]`), and a table whose columns are only positions (a
    `.npy` array, a file without a header) takes the training names in their order.

    Args:
        spec: a file path, "builtin:NAME" or "sklearn:NAME".
        cfg: the data config (delimiter, header, target, categorical and missing values).
        root: data root for relative paths (see `polyjepa.paths.data_root`).
        field: config key that named `spec` (e.g. "data.path"), used in error messages.

    Returns:
        The table `[N, F + 1]` (features and label), as described in the module docstring.

    Raises:
        DataError: the file is missing, empty, unreadable or has fewer than 2 rows; the target
            or a categorical column is absent; a column is entirely missing; labels are
            missing; a numeric column holds a non-number, NaN or ±inf.
    """
    return _read(spec, cfg, root, field, known)[0]


def _read(
    spec: str, cfg: TabularDataConfig, root: Path | None, field: str,
    known: KnownColumns | None = None,
) -> tuple[pd.DataFrame, str]:
    """`read_frame`, also returning the name of the source used in error messages."""
    raw, source = _load_raw(spec, cfg, root, field)
    if known is not None:
        raw = _name_positions(raw, known, source)
    return _clean(raw, cfg, source, None if known is None else known.target), source


def _name_positions(raw: pd.DataFrame, known: KnownColumns, source: str) -> pd.DataFrame:
    """Give a table whose columns are only positions ("0", "1", ...) the training table's names:
    its feature columns in order (`[N, F]`), or all its columns (`[N, F + 1]`)."""
    width = raw.shape[1]
    positions = [str(i) for i in range(width)]
    if list(raw.columns) != positions or known.columns[:width] == positions:
        return raw
    for names in (known.features, known.columns):
        if width == len(names):
            return raw.set_axis(names, axis=1)
    raise DataError(
        f"{source}: {width} unnamed columns, but the training table has {len(known.features)} "
        f"feature columns ({_listing(known.features)}) and the label column {known.target!r}: "
        "pass the feature columns in that order, or a table with their names in a header"
    )


def _load_raw(
    spec: str, cfg: TabularDataConfig, root: Path | None, field: str
) -> tuple[pd.DataFrame, str]:
    """Load a table without checking its values.

    Returns:
        (frame, source): string column names, 1-based row-number index.
    """
    kind, _, name = spec.partition(":")
    if kind == "sklearn" and name:
        return _load_sklearn(name, field), spec
    if kind == "builtin" and name:
        path = _builtin_path(name, field)
    else:
        path = resolve_path(spec, root, field)
    if not path.is_file():
        raise DataError(f"{field}: {path} is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes): point {field} at a file with data rows")
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        return _load_parquet(path), str(path)
    if path.suffix.lower() == ARRAY_SUFFIX:
        return _load_array(path), str(path)
    if _text_suffix(path) is None:
        raise DataError(
            f"{path}: unknown file type; {field} must end in .parquet, .pq, .npy or one of "
            f"{', '.join(TEXT_SUFFIXES)} (optionally followed by .gz, .bz2, .zip or .xz)"
        )
    return _load_text(path, cfg), str(path)


def _builtin_path(name: str, field: str) -> Path:
    """Path of bundled table `name`."""
    path = BUILTIN_DIR / f"{name}.csv.gz"
    if not path.is_file():
        available = sorted(p.name.removesuffix(".csv.gz") for p in BUILTIN_DIR.glob("*.csv.gz"))
        raise DataError(
            f"{field}: no bundled table 'builtin:{name}'; available: "
            + ", ".join(f"builtin:{n}" for n in available)
        )
    return path


def _load_sklearn(name: str, field: str) -> pd.DataFrame:
    """A scikit-learn toy dataset as a frame whose last column `target` holds class names."""
    if name not in SKLEARN_LOADERS:
        raise DataError(
            f"{field}: unknown scikit-learn dataset 'sklearn:{name}'; available: "
            + ", ".join(f"sklearn:{n}" for n in SKLEARN_LOADERS)
        )
    bunch = SKLEARN_LOADERS[name](as_frame=True)
    frame = bunch.frame.copy()
    frame["target"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()].astype(str)
    return _number_rows(frame, start=1, name="row")


def _load_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file; nulls (and NaN) are missing values."""
    try:
        frame = pd.read_parquet(path)
    except ImportError as err:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow: pip install 'polyjepa[parquet]'"
        ) from err
    except Exception as err:  # pyarrow raises its own exception types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err
    return _number_rows(frame.reset_index(drop=True), start=1, name="row")


def _load_array(path: Path) -> pd.DataFrame:
    """Read a 2-D numeric `.npy` array `[N, W]`; columns are named by position; NaN is missing."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:  # an object array (strings, mixed types) needs pickle: refused
        raise DataError(f"{path}: not an array of numbers ({err}); save mixed-type tables as CSV "
                        "or Parquet, or pass a pandas DataFrame") from None
    except OSError as err:
        raise DataError(f"{path}: not a readable .npy file ({err})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: a table needs a 2-D array of numbers [rows, columns], got "
                        f"shape {list(array.shape)} of {array.dtype}")
    return _number_rows(pd.DataFrame(array), start=1, name="row")


def _load_text(path: Path, cfg: TabularDataConfig) -> pd.DataFrame:
    """Read a delimited text file as strings, sniffing the delimiter and header if not given.

    Rows that are blank or hold only empty fields are skipped (the line numbers stay exact).
    """
    rows = _sample_rows(path, cfg.delimiter)
    delimiter = _sniff_delimiter(rows) if cfg.delimiter is None else cfg.delimiter
    delimiter = delimiter.strip() or delimiter  # ", " -> ","; fields are stripped anyway
    header = cfg.header
    if header is None:
        missing = {m.strip() for m in cfg.missing_values}
        header = _detect_header(_split_rows(rows, delimiter), missing)
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            header=0 if header else None,
            dtype=str,
            na_filter=False,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=False,
            encoding="utf-8-sig",
            encoding_errors="replace",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as err:
        raise DataError(
            f"{path}: cannot parse as a table with delimiter {delimiter!r} "
            f"({str(err).strip()}); set data.delimiter (and data.header) explicitly"
        ) from err
    frame = _number_rows(frame, start=2 if header else 1, name="line")
    blank = frame.apply(lambda col: col.fillna("").str.strip().eq("")).all(axis=1)
    return frame[~blank]


def _text_suffix(path: Path) -> str | None:
    """The text suffix (".csv", ...) of `path`, looking past a compression suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and (suffixes[-1] in COMPRESSION_OPENERS or suffixes[-1] == ".zip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes and suffixes[-1] in TEXT_SUFFIXES else None


def _sample_rows(path: Path, delimiter: str | None) -> list[str]:
    """The first non-blank lines of a (possibly compressed) text file.

    Raises:
        DataError: the file cannot be decompressed, or holds no non-blank line.
    """
    try:
        raw = _head_bytes(path)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot read the file ({err})") from err
    lines = raw.decode("utf-8-sig", errors="replace").splitlines()
    if len(raw) == SNIFF_BYTES:
        lines = lines[:-1]  # the last line may be cut off
    lines = [line for line in lines if line.strip()][:SNIFF_LINES]
    if not lines:
        raise DataError(f"{path} has no data rows (only blank lines): check the file")
    return lines


def _head_bytes(path: Path) -> bytes:
    """The first `SNIFF_BYTES` bytes of the (decompressed) file."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not names:
                return b""
            with archive.open(names[0]) as handle:
                return handle.read(SNIFF_BYTES)
    with COMPRESSION_OPENERS.get(suffix, open)(path, "rb") as handle:
        return handle.read(SNIFF_BYTES)


def _split_rows(lines: list[str], delimiter: str) -> list[list[str]]:
    """Split sample lines into stripped fields."""
    return [[value.strip() for value in row] for row in csv.reader(lines, delimiter=delimiter)]


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits every sample line into the same number (> 1) of fields,
    preferring more fields, then the order of `DELIMITERS`; "," if none does."""
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = delimiter, width
    return best


def _detect_header(rows: list[list[str]], missing: set[str]) -> bool:
    """Whether the first row holds column names, judged column by column as csv.Sniffer does.

    A column votes for a header when its first value differs in kind from the others (a word
    above numbers, or a different length above values that all share one length) and against
    when it does not, or when its first value recurs below it. Missing markers are ignored.
    With no votes (e.g. only free-text columns) a header is assumed.

    Args:
        rows: the first lines of the file, split into stripped fields.
        missing: strings that mean "missing".

    Returns:
        True when the first row looks like a header.
    """
    first, rest = rows[0], rows[1:]
    votes = 0
    for col, name in enumerate(first):
        values = [row[col] for row in rest if col < len(row) and row[col] not in missing]
        if name in missing or not values:
            continue
        if all(_is_number(v) for v in values):
            votes += -1 if _is_number(name) else 1
        elif name in values:
            votes -= 1
        elif len({len(v) for v in values}) == 1:
            votes += 1 if len(name) != len(values[0]) else -1
    return votes >= 0


def _is_number(text: str) -> bool:
    """Whether `text` parses as a float."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number_rows(frame: pd.DataFrame, start: int, name: str) -> pd.DataFrame:
    """Name columns by strings and index rows from `start` (index name `name`)."""
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.index = pd.RangeIndex(start, start + len(frame), name=name)
    return frame


# ---------------------------------------------------------------------------------------------
# Checking


def _clean(raw: pd.DataFrame, cfg: TabularDataConfig, source: str,
           known_target: str | None = None) -> pd.DataFrame:
    """Turn a raw frame into floats (numeric) and strings (categorical and label), checked.

    Args:
        raw: `[N, F + 1]` as loaded, string column names.
        cfg: the data config.
        source: file name for error messages.

    Returns:
        `[N, F + 1]` with float numeric columns and string categorical/label columns.

    Raises:
        DataError: see `read_frame`.
    """
    if len(raw) == 0:
        raise DataError(f"{source} has no data rows: check the file (and data.header)")
    if len(raw) < 2:
        raise DataError(f"{source} has only 1 data row; at least 2 are needed")
    columns = list(raw.columns)
    if known_target is not None:
        target = known_target if known_target in columns else None
    else:
        target = resolve_column(cfg.target, columns, source, "data.target")
    forced = _forced_categorical(cfg, columns, target, source)
    missing = {m.strip() for m in cfg.missing_values}
    clean = {}
    for name in columns:
        values = _mark_missing(raw[name], missing)
        if name == target:
            check_labels(values, name, source)
            clean[name] = category_strings(values)
            continue
        check_not_all_missing(values, name, source)
        if forced is not None and name in forced:
            clean[name] = category_strings(values)
            continue
        strict = forced is not None  # categorical columns listed: every other one is numeric
        numbers = numeric_column(values, name, source, 0.0 if strict else NUMERIC_FRACTION)
        clean[name] = category_strings(values) if numbers is None else numbers
    return pd.DataFrame(clean, index=raw.index)


def resolve_column(spec: str | int | None, columns: Sequence[str], source: str,
                   field: str) -> str:
    """The column named by `spec`: a name, or an integer position (negative from the end).

    Raises:
        DataError: no such column (the message lists the available ones), or `spec` is None.
    """
    if spec is None:
        raise DataError(f"{field} is null, but {source} is read as training data, which needs "
                        f"that column: name it ({field}=COLUMN, or a position)")
    if isinstance(spec, int) and not isinstance(spec, bool):
        if -len(columns) <= spec < len(columns):
            return columns[spec]
        raise DataError(
            f"{field}: column position {spec} is out of range for {source}, which has "
            f"{len(columns)} columns: {_listing(columns)}"
        )
    if spec in columns:
        return str(spec)
    raise DataError(
        f"{field}: column {spec!r} is not in {source}; available columns: {_listing(columns)}"
        " (without a header, columns are named by position: '0', '1', ...)"
    )


def _forced_categorical(
    cfg: TabularDataConfig, columns: Sequence[str], target: str | None, source: str
) -> set[str] | None:
    """The columns listed in `cfg.categorical`, or None to detect them."""
    if cfg.categorical is None:
        return None
    forced = {resolve_column(c, columns, source, "data.categorical") for c in cfg.categorical}
    if target in forced:
        raise DataError(
            f"data.categorical lists the label column {target!r} of {source}; remove it"
        )
    return forced


def _mark_missing(values: pd.Series, missing: set[str]) -> pd.Series:
    """Numeric columns unchanged; others as stripped strings with `missing` strings -> <NA>."""
    if _is_numeric(values):
        return values
    text = values.astype("string").str.strip()
    return text.mask(text.isin(missing))


def _is_numeric(values: pd.Series) -> bool:
    """Whether a column holds numbers (booleans count as categories)."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def check_labels(labels: pd.Series, name: str, source: str) -> None:
    """Raise if any label is missing.

    Raises:
        DataError: names the count and the first row without a label.
    """
    absent = labels.isna()
    if absent.any():
        raise DataError(
            f"{source}: {int(absent.sum())} rows have no label in column {name!r} (first: "
            f"{_where(labels.index, absent)}); fill them in or drop those rows"
        )


def check_not_all_missing(values: pd.Series, name: str, source: str) -> None:
    """Raise if every value of a feature column is missing.

    Raises:
        DataError: names the column.
    """
    if values.isna().all():
        raise DataError(
            f"{source}: every value of column {name!r} is missing; drop the column or fix the "
            "file (data.missing_values lists the strings that count as missing)"
        )


def numeric_column(
    values: pd.Series, name: str, source: str, min_fraction: float
) -> pd.Series | None:
    """Parse a column as float64 (missing -> NaN).

    Args:
        values: a column (`[N]`) after `_mark_missing`: numbers, or strings with <NA>.
        name: column name, for messages.
        source: file name, for messages.
        min_fraction: when fewer than this share of the present values are numbers, the column
            is not numeric and None is returned; otherwise every value must be a number
            (0.0 makes any non-number an error).

    Returns:
        `[N]` float64, or None for a non-numeric column.

    Raises:
        DataError: a numeric column holds a non-number, a literal NaN, or ±inf (names the
            column, the row and the value).
    """
    if _is_numeric(values):
        numbers = values.astype("float64")  # typed sources: NaN/null is a missing value
    else:
        text = values.astype("string")
        number = text.str.fullmatch(NUMBER_PATTERN, case=False).fillna(False).to_numpy(bool)
        nan_word = text.str.fullmatch(NAN_PATTERN, case=False).fillna(False).to_numpy(bool)
        junk = text.notna().to_numpy(bool) & ~number & ~nan_word
        present = int(text.notna().sum())
        if junk.any():
            if present - junk.sum() < min_fraction * present:
                return None
            raise DataError(
                f"{source}: column {name!r} is numeric but {_where(values.index, junk)} holds "
                f"{text[junk].iloc[0]!r}; fix the value, add it to data.missing_values, or "
                "list the column in data.categorical"
            )
        if nan_word.any():
            raise DataError(
                f"{source}: column {name!r} holds NaN at {_where(values.index, nan_word)}; "
                "write missing values as one of data.missing_values (e.g. '?') instead"
            )
        parsed = pd.to_numeric(text.where(number), errors="coerce").astype("Float64")
        numbers = pd.Series(parsed.to_numpy("float64", na_value=np.nan), index=values.index)
    infinite = np.isinf(numbers.to_numpy())
    if infinite.any():
        raise DataError(
            f"{source}: column {name!r} holds an infinite value at "
            f"{_where(values.index, infinite)}; replace it with a finite number or a missing value"
        )
    return numbers


def strict_numeric_column(values: pd.Series, name: str, source: str) -> pd.Series:
    """`numeric_column` of a column that must be numeric: any non-number is a DataError."""
    # min_fraction 0: a non-number raises rather than returning None
    return cast(pd.Series, numeric_column(values, name, source, 0.0))


def category_strings(values: pd.Series) -> pd.Series:
    """A column as category strings (<NA> = missing); whole floats print as integers ("3")."""
    if _is_numeric(values):
        values = values.map(_number_string, na_action="ignore")
    return values.astype("string")


def _number_string(value: float) -> str:
    """A number as a category name: "3" for 3.0, "2.5" for 2.5."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _where(index: pd.Index, mask: np.ndarray | pd.Series) -> str:
    """'line 7' / 'row 7': the first row of `index` where `mask` is True."""
    return f"{index.name or 'row'} {index[np.asarray(mask, dtype=bool)][0]}"


def _listing(items: Sequence[str]) -> str:
    """Items quoted and comma-separated, cut after `LIST_LIMIT`."""
    shown = ", ".join(repr(str(i)) for i in items[:LIST_LIMIT])
    return shown + (f", ... ({len(items)} in all)" if len(items) > LIST_LIMIT else "")


# ---------------------------------------------------------------------------------------------
# Encoding


@dataclass
class TabularEncoder:
    """Feature and label encoding fitted on training rows; plain python fields only, so that
    `dataclasses.asdict(encoder)` can be saved and `TabularEncoder(**saved)` restores it.

    Attributes:
        target: label column.
        columns: all columns of the training table, in order (label included).
        numeric: numeric feature columns.
        categorical: categorical feature columns.
        means, stds: training mean and standard deviation of each numeric column (std 0 -> 1).
        vocabularies: sorted known categories of each categorical column (index i + 1).
        class_names: sorted training labels (class index i).
    """

    target: str
    columns: list[str]
    numeric: list[str]
    categorical: list[str]
    means: list[float]
    stds: list[float]
    vocabularies: list[list[str]]
    class_names: list[str]
    task: str = "classification"

    @classmethod
    def fit(cls, frame: pd.DataFrame, cfg: TabularDataConfig, source: str,
            task: str = "classification") -> TabularEncoder:
        """Fit on the training rows.

        Args:
            frame: training table `[N, F + 1]` (from `read_frame`, or any frame with float
                numeric columns and string categorical columns).
            cfg: the data config (`target` and `categorical`).
            source: file name for messages.
            task: `classification` or `regression` (`polyjepa.targets.decide_task`).

        Returns:
            The fitted encoder.

        Raises:
            DataError: absent target/categorical column, a feature entirely missing in these
                rows, a non-number in a numeric column, missing labels, or fewer than 2 classes.
        """
        columns = [str(c) for c in frame.columns]
        target = resolve_column(cfg.target, columns, source, "data.target")
        features = [c for c in columns if c != target]
        forced = _forced_categorical(cfg, columns, target, source)
        if forced is None:
            numeric = [c for c in features if _is_numeric(frame[c])]
        else:
            numeric = [c for c in features if c not in forced]
        categorical = [c for c in features if c not in numeric]
        for name in features:
            check_not_all_missing(frame[name], name, source)
        stats = [_mean_std(strict_numeric_column(frame[c], c, source)) for c in numeric]
        labels = category_strings(frame[target])
        check_labels(labels, target, source)
        class_names = [] if task == "regression" else _distinct(labels)
        if task == "regression" and len(np.unique(as_targets(labels.tolist(), source))) < 2:
            raise DataError(f"{source}: column {target!r} holds one value; a regression target "
                            "needs at least 2 (is data.target the label column?)")
        if task != "regression" and len(class_names) < 2:
            raise DataError(
                f"{source}: column {target!r} holds a single class {class_names[0]!r}; "
                "classification needs at least 2 (is data.target the label column?)"
            )
        return cls(
            target=target,
            columns=columns,
            numeric=numeric,
            categorical=categorical,
            means=[m for m, _ in stats],
            stds=[s for _, s in stats],
            vocabularies=[_distinct(category_strings(frame[c])) for c in categorical],
            class_names=class_names,
            task=task,
        )

    @property
    def meta(self) -> dict:
        """Shapes and names for building models; plain python types (saved in checkpoints).

        Returns:
            feature_names (numeric then categorical), num_numeric, cardinalities
            (K_i + 1 per categorical column: index 0 = missing/unseen), num_classes,
            class_names.
        """
        return {
            "feature_names": list(self.numeric) + list(self.categorical),
            "num_numeric": len(self.numeric),
            "cardinalities": [len(v) + 1 for v in self.vocabularies],
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
            "task": self.task,
        }

    def transform(self, frame: pd.DataFrame, source: str) -> TabularTensors:
        """Encode a table with the training statistics.

        Args:
            frame: `[N, F + 1]` with the training table's columns (any order), or `[N, F]`
                without its label column (unlabelled rows: `data.unlabelled`, `embed`).
            source: file name for messages.

        Returns:
            `TabularTensors` with num `[N, F_num]`, cat `[N, F_cat]`, y `[N]` (-1 without labels).

        Raises:
            DataError: the columns differ from the training table's; a numeric column holds a
                non-number; a label is missing or was not seen in training.
        """
        self._check_columns(frame, source)
        n = len(frame)
        num = np.zeros((n, len(self.numeric)), dtype=np.float32)
        for i, (name, mean, std) in enumerate(
            zip(self.numeric, self.means, self.stds, strict=True)
        ):
            values = strict_numeric_column(frame[name], name, source).to_numpy()
            num[:, i] = np.nan_to_num((values - mean) / std, nan=0.0)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for i, (name, vocab) in enumerate(zip(self.categorical, self.vocabularies, strict=True)):
            cat[:, i] = pd.Index(vocab).get_indexer(category_strings(frame[name])) + 1
        return TabularTensors(
            num=torch.from_numpy(num),
            cat=torch.from_numpy(cat),
            y=(self._encode_labels(frame, source) if self.target in frame.columns
               else torch.full((n,), math.nan) if self.task == "regression"
               else torch.full((n,), -1, dtype=torch.long)),
        )

    def _check_columns(self, frame: pd.DataFrame, source: str) -> None:
        """Raise if `frame` does not have exactly the training columns."""
        present = [str(c) for c in frame.columns]
        absent = [c for c in self.columns if c not in present and c != self.target]
        extra = [c for c in present if c not in self.columns]
        if absent or extra:
            raise DataError(
                f"{source}: columns differ from the training table's: missing {absent}, "
                f"unexpected {extra}; the test file needs the same columns as the training file "
                "(check data.header, which applies to both)"
            )

    def _encode_labels(self, frame: pd.DataFrame, source: str) -> Tensor:
        """Class indices `[N]`; a label "X." counts as training class "X" (UCI Adult's test file).

        Raises:
            DataError: a label is missing or unseen; lists the unseen labels.
        """
        labels = category_strings(frame[self.target]).str.strip()
        check_labels(labels, self.target, source)
        if self.task == "regression":
            return torch.from_numpy(as_targets(labels.tolist(), f"{source}: column {self.target!r}"))
        known = pd.Index(self.class_names)
        trimmed = labels.str.removesuffix(".")
        labels = labels.mask(~labels.isin(known) & trimmed.isin(known), trimmed)
        codes = known.get_indexer(labels)
        if (codes < 0).any():
            unseen = _distinct(labels[codes < 0])
            raise DataError(
                f"{source}: labels in column {self.target!r} not seen in training: "
                f"{_listing(unseen)} (first: {_where(frame.index, codes < 0)}); training classes: "
                f"{_listing(self.class_names)}"
            )
        return torch.from_numpy(codes.astype(np.int64))


def _distinct(values: pd.Series) -> list[str]:
    """Sorted distinct present values of a string column."""
    return sorted(values.dropna().unique().tolist())


def _mean_std(values: pd.Series) -> tuple[float, float]:
    """Mean and standard deviation of the present values; a std of 0 (or undefined) -> 1."""
    mean, std = float(values.mean()), float(values.std())
    return mean, std if std > 0 else 1.0


# ---------------------------------------------------------------------------------------------
# Datasets


class TabularDataset(Dataset):
    """Encoded rows: item i is `({"num": [F_num], "cat": [F_cat]}, y)` with y a 0-dim long (a class) or
    float (a regression target)."""

    def __init__(self, tensors: TabularTensors, cardinalities: Sequence[int]) -> None:
        """
        Args:
            tensors: the encoded table.
            cardinalities: K_i + 1 per categorical column (`TabularEncoder.meta`).
        """
        self.tensors = tensors
        self.cardinalities = list(cardinalities)

    def __len__(self) -> int:
        return len(self.tensors.y)

    @property
    def labels(self) -> Tensor:
        """`[N]` class indices (-1: none)."""
        return self.tensors.y

    def __getitem__(self, i: int) -> tuple[dict[str, Tensor], Tensor]:
        return {"num": self.tensors.num[i], "cat": self.tensors.cat[i]}, self.tensors.y[i]

    def raw_features(self) -> Tensor:
        """Numeric values and one-hot categories, the raw-feature baseline for probes.

        Returns:
            `[N, F_num + sum(K_i)]` float32; a missing or unseen category is all zeros.
        """
        one_hots = [
            torch.nn.functional.one_hot(self.tensors.cat[:, i], k)[:, 1:].float()
            for i, k in enumerate(self.cardinalities)
        ]
        return torch.cat([self.tensors.num, *one_hots], dim=1)


def load_splits(
    cfg: TabularDataConfig, root: Path | None
) -> tuple[TabularDataset, TabularDataset, TabularEncoder]:
    """Read the training and test tables, fit the encoder on the training rows, encode both.

    Args:
        cfg: the data config; without `test_path`, `path` is split (stratified by label,
            seeded by `split_seed`, `test_fraction` held out).
        root: data root for relative paths.

    Returns:
        (train, test, the fitted encoder).

    Raises:
        ConfigError: `test_fraction` is not in (0, 1).
        DataError: see `read_frame`, `TabularEncoder.fit` and `TabularEncoder.transform`.
    """
    frame, source = _read(cfg.path, cfg, root, "data.path")
    target = resolve_column(cfg.target, list(frame.columns), source, "data.target")
    task = decide_task(category_strings(frame[target]).tolist(), cfg.task,
                       f"{source}: column {target!r}")
    if cfg.test_path is None:
        train, test = _split(frame, cfg, source, stratify=task == "classification")
        train_source, test_source = f"{source} (training part)", f"{source} (held-out part)"
    else:
        train, train_source = frame, source
        test, test_source = _read(cfg.test_path, cfg, root, "data.test_path")
    encoder = TabularEncoder.fit(train, cfg, train_source, task)
    cards = encoder.meta["cardinalities"]
    return (
        TabularDataset(encoder.transform(train, train_source), cards),
        TabularDataset(encoder.transform(test, test_source), cards),
        encoder,
    )


def _split(
    frame: pd.DataFrame, cfg: TabularDataConfig, source: str, stratify: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split, stratified by label when every class can be represented (and
    `stratify`: not for a regression target).

    Returns:
        (train rows, test rows), each keeping the file's row numbers.
    """
    if not 0.0 < cfg.test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction must be in (0, 1), got {cfg.test_fraction}")
    labels = frame[resolve_column(cfg.target, list(frame.columns), source, "data.target")]
    if not stratify:
        return train_test_split(frame, test_size=cfg.test_fraction, random_state=cfg.split_seed)
    problem = _stratify_problem(labels, cfg.test_fraction)
    if problem:
        log.warning("%s: test split is not stratified because %s", source, problem)
    train, test = train_test_split(
        frame,
        test_size=cfg.test_fraction,
        random_state=cfg.split_seed,
        stratify=None if problem else labels,
    )
    return train, test


def _stratify_problem(labels: pd.Series, fraction: float) -> str | None:
    """Why a stratified split of `labels` is impossible, or None."""
    counts = labels.value_counts()
    rare = sorted(counts.index[counts < 2])
    if rare:
        return f"classes {_listing(rare)} have fewer than 2 rows"
    n_test = math.ceil(fraction * len(labels))
    if min(n_test, len(labels) - n_test) < len(counts):
        return f"a part of the split would have fewer rows than the {len(counts)} classes"
    return None


# ---------------------------------------------------------------------------------------------
# Synthetic data


def synthetic_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A small table with learnable, interaction-driven structure, for smoke tests.

    Six numeric features `num_0..num_5` (num_3..num_5 depend on num_0..num_2 and on the
    categories, so features predict each other), three categorical features `cat_0..cat_2`,
    and a `label` among "class_0".."class_2" that depends on products of features rather than
    on any single one. About 2% of the feature values are missing.

    Args:
        n: number of rows.
        seed: random seed.

    Returns:
        `[n, 10]` frame: float numeric columns (NaN = missing), string categorical columns
        (None = missing) and the label; index = 1-based row numbers.
    """
    rng = np.random.default_rng(seed)
    cat = np.stack([rng.integers(0, k, n) for k in (4, 3, 2)], axis=1)
    x = rng.normal(size=(n, 6))
    sign = np.where(cat[:, 2] == 1, 1.0, -1.0)
    x[:, 3] = x[:, 0] * x[:, 1] + 0.3 * x[:, 3]
    x[:, 4] = sign * x[:, 2] + 0.5 * (cat[:, 0] - 1.5) + 0.3 * x[:, 4]
    x[:, 5] = np.sin(2 * x[:, 0]) + (cat[:, 1] - 1) + 0.3 * x[:, 5]
    logits = np.stack(
        [x[:, 0] * x[:, 1] + (cat[:, 0] == 0), x[:, 2] * sign + 0.5 * x[:, 5], x[:, 3] * x[:, 4]],
        axis=1,
    )
    labels = np.argmax(logits + 0.3 * rng.normal(size=logits.shape), axis=1)
    frame = pd.DataFrame({f"num_{i}": x[:, i] for i in range(6)})
    for i, names in enumerate(("abcd", "uvw", "pq")):
        frame[f"cat_{i}"] = pd.Series(np.asarray(list(names), dtype=object)[cat[:, i]])
    frame = frame.mask(rng.random(frame.shape) < 0.02)
    frame["label"] = np.char.add("class_", labels.astype(str))
    return _number_rows(frame, start=1, name="row")
