"""Find labelled data files and split them into train and test, for any file-per-sample modality.

Three layouts, all giving a list of `LabelledFile(path, label, groups)`:

* a folder with one sub-folder per class (`dog/1.wav`, `car/7.ply`);
* a folder of files whose names carry the label, read with `data.label_regex` (a named group
  `label`; other named groups, e.g. FSDD's `speaker` and `index`, can split train from test
  through `data.test_groups`);
* a CSV manifest with the columns `path,label[,split]` (paths relative to the manifest).

Unlabelled data (`data.unlabelled`, `embed`) may also be a flat folder, a manifest without a
`label` column, one sample file, or a glob pattern matching any of these.

A modality's `data:` section extends `FileDataConfig` with how to decode its files.
"""

from __future__ import annotations

import csv
import glob
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from polyjepa.config import DataConfig
from polyjepa.errors import ConfigError, DataError
from polyjepa.paths import expand_pattern, resolve_path

SPLITS = ("train", "test")
MANIFEST_SUFFIXES = (".csv", ".tsv")


@dataclass
class FileDataConfig(DataConfig):
    """The `data:` keys shared by modalities that read one file per sample."""

    path_keys = ("path", "test_path")
    dataset_keys: ClassVar[dict[str, Any]] = {
        "test_path": None, "label_regex": None, "test_groups": None, "probe_groups": []}

    # A folder (one sub-folder per class, or files labelled by `label_regex`) or a CSV manifest
    # `path,label[,split]`; relative paths are looked up under the data root.
    path: str = ""
    # Held-out folder or manifest; None -> the manifest's `split` column, `test_groups`, or a
    # seeded stratified split of `path` holding out `test_fraction`.
    test_path: str | None = None
    # Regular expression matched against each file name; its named group `label` is the class.
    label_regex: str | None = None
    # Held-out files by regex group value, e.g. {index: ["0", "1", "2", "3", "4"]}.
    test_groups: dict[str, list[str]] | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    extensions: list[str] = field(default_factory=list)  # the modality sets its formats
    on_error: str = "raise"  # a file that fails to load during training: raise | skip
    # Named groups of `label_regex` probed as extra class targets by `polyjepa eval` (e.g.
    # [speaker] on FSDD: who speaks, beside which digit), indexed by their training values.
    probe_groups: list[str] = field(default_factory=list)


@dataclass
class LabelledFile:
    """One data file: its path, class name (None when unlabelled) and regex groups."""

    path: Path
    label: str | None
    groups: dict[str, str] = field(default_factory=dict)


def normalized_extensions(extensions: list[str]) -> tuple[str, ...]:
    """`[".WAV", "ply"]` -> `(".wav", ".ply")`."""
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def list_files(spec: str, cfg: FileDataConfig, root: Path | None, field_name: str,
               what: str, is_sample_dir: Callable[[Path], bool] | None = None,
               ) -> tuple[list[LabelledFile], list[str | None]]:
    """Files of a folder or manifest, and the manifest's split column (None per file otherwise).

    Args:
        what: what the files hold, for messages ("audio files", "point clouds").
        is_sample_dir: directories for which it is true are samples themselves (a video's
            folder of frames), found and labelled like files.

    Raises:
        DataError: the path is missing, holds no file with one of `cfg.extensions`, a file name
            does not match `label_regex`, or a manifest row is malformed; each names the file.
    """
    if not spec:
        raise DataError(f"{field_name}: set it to a folder of {what} or a CSV manifest")
    if glob.has_magic(spec):  # each match read as if named alone, in name order
        files, splits = [], []
        for match in expand_pattern(spec, root, field_name):
            more, more_splits = list_files(match, cfg, root, field_name, what, is_sample_dir)
            files += more
            splits += more_splits
        return files, splits
    path = resolve_path(spec, root, field_name)
    if _is_sample(path, cfg, is_sample_dir):  # one sample, unlabelled (data.unlabelled, embed)
        return [LabelledFile(path, None)], [None]
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES:
            raise DataError(f"{field_name}: {path} is a file but not a CSV manifest "
                            "(path,label[,split]) nor one of "
                            f"{', '.join(normalized_extensions(cfg.extensions))}; give a folder "
                            "or a .csv")
        return _read_manifest(path, cfg, what, is_sample_dir)
    files = _folder_files(path, cfg, field_name, what, is_sample_dir)
    return files, [None] * len(files)


def _is_sample(path: Path, cfg: FileDataConfig,
               is_sample_dir: Callable[[Path], bool] | None) -> bool:
    """A file with one of the modality's extensions, or a folder that is a sample itself."""
    if path.is_file():
        return path.suffix.lower() in normalized_extensions(cfg.extensions)
    return is_sample_dir is not None and path.is_dir() and is_sample_dir(path)


def _folder_files(folder: Path, cfg: FileDataConfig, field_name: str, what: str,
                  is_sample_dir: Callable[[Path], bool] | None) -> list[LabelledFile]:
    exts = normalized_extensions(cfg.extensions)
    dirs = set()
    if is_sample_dir is not None:
        dirs = {p for p in folder.rglob("*") if p.is_dir() and is_sample_dir(p)}
    paths = sorted({p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts
                    and p.parent not in dirs} | dirs)
    if not paths:
        seen = sorted({p.suffix for p in folder.rglob("*") if p.is_file()})[:10]
        raise DataError(f"{field_name}: no {what} ({', '.join(exts)}) in {folder}"
                        + (f"; found only {', '.join(seen)}" if seen else ""))
    if cfg.label_regex is not None:
        pattern = compile_label_regex(cfg.label_regex)
        files = []
        for p in paths:
            match = pattern.search(p.name)
            if match is None:
                raise DataError(f"{p}: file name does not match data.label_regex "
                                f"{cfg.label_regex!r}; for class sub-folders set "
                                "data.label_regex=null (the my_* recipes of `polyjepa recipes` "
                                "read your data that way)")
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            files.append(LabelledFile(p, groups.get("label"), groups))
        return files
    nested = [p for p in paths if p.parent != folder]
    if nested and len(nested) != len(paths):
        loose = next(p for p in paths if p.parent == folder)
        raise DataError(f"{folder}: mixes class sub-folders with loose files (e.g. {loose.name}); "
                        "put every file in a class folder, or set data.label_regex")
    if not nested:  # a flat folder without a regex: unlabelled files (pretraining only)
        return [LabelledFile(p, None) for p in paths]
    return [LabelledFile(p, p.relative_to(folder).parts[0]) for p in paths]


def compile_label_regex(text: str) -> re.Pattern:
    """`data.label_regex`, compiled; it must have a named group `label`."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"data.label_regex: not a valid regular expression ({exc})") from None
    if "label" not in pattern.groupindex:
        raise ConfigError(f"data.label_regex {text!r} has no named group 'label', e.g. "
                          r"'^(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav$'")
    return pattern


def _read_manifest(path: Path, cfg: FileDataConfig, what: str,
                   is_sample_dir: Callable[[Path], bool] | None,
                   ) -> tuple[list[LabelledFile], list[str | None]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8"
            sample = f.read(4096)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:  # one column (paths only), or nothing to go by
                dialect = csv.excel
            rows = list(csv.reader(f, dialect))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    if not rows:
        raise DataError(f"{path}: empty manifest; expected a header path,label[,split]")
    header = [h.strip().lower() for h in rows[0]]
    if "path" not in header:
        raise DataError(f"{path}: manifest header {rows[0]} has no 'path' column "
                        "(expected path,label[,split])")
    col = {name: header.index(name) for name in ("path", "label", "split") if name in header}
    exts = normalized_extensions(cfg.extensions)
    files, splits = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        file = Path(row[col["path"]].strip())
        file = file if file.is_absolute() else path.parent / file
        sample_dir = is_sample_dir is not None and file.is_dir() and is_sample_dir(file)
        if file.suffix.lower() not in exts and not sample_dir:
            raise DataError(f"{path}, line {line}: {file.name}: unsupported extension "
                            f"'{file.suffix}' for {what}; supported: {', '.join(exts)}")
        label = row[col["label"]].strip() or None if "label" in col else None
        split = row[col["split"]].strip().lower() if "split" in col else None
        if split is not None and split not in SPLITS:
            raise DataError(f"{path}, line {line}: split '{split}' is not train or test")
        files.append(LabelledFile(file, label))
        splits.append(split)
    if not files:
        raise DataError(f"{path}: the manifest lists no files")
    return files, splits


def split_files(files: list, splits: list[str | None], cfg: FileDataConfig,
                source: str) -> tuple[list, list]:
    """Train and test items by manifest column, `test_groups`, or a seeded stratified split.

    `files` may hold any items with `label` and `groups` attributes (`LabelledFile`, or a
    bundle's entries).
    """
    if cfg.test_groups is not None:
        return _split_by_groups(files, cfg.test_groups, source)
    if any(s is not None for s in splits):
        if any(s is None for s in splits):
            raise DataError(f"{source}: some manifest rows have a split and others do not")
        train = [c for c, s in zip(files, splits, strict=True) if s == "train"]
        test = [c for c, s in zip(files, splits, strict=True) if s == "test"]
        if not train or not test:
            raise DataError(f"{source}: the manifest's split column needs both train and test rows")
        return train, test
    if not 0.0 < cfg.test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction must be in (0, 1), got {cfg.test_fraction}")
    from sklearn.model_selection import train_test_split

    labels = [c.label for c in files]
    counts = {lab: labels.count(lab) for lab in set(labels)}
    n_test = math.ceil(cfg.test_fraction * len(files))
    fits = min(n_test, len(files) - n_test) >= len(counts)  # every class on both sides
    stratify = labels if None not in counts and min(counts.values()) >= 2 and fits else None
    if min(n_test, len(files) - n_test) < 1:
        raise DataError(f"{source}: {len(files)} samples cannot be split with data.test_fraction="
                        f"{cfg.test_fraction}; add samples or give data.test_path")
    train, test = train_test_split(files, test_size=cfg.test_fraction,
                                   random_state=cfg.split_seed, stratify=stratify)
    return train, test


def _split_by_groups(files: list, test_groups: dict[str, list[str]], source: str
                     ) -> tuple[list, list]:
    for key, values in test_groups.items():
        if not isinstance(values, list):
            raise ConfigError(f"data.test_groups.{key}: expected a list of values, got {values!r}")
        if not any(key in c.groups for c in files):
            raise ConfigError(f"data.test_groups: '{key}' is not a named group of data.label_regex")
    wanted = {k: {str(v) for v in vals} for k, vals in test_groups.items()}
    is_test = [all(c.groups.get(k) in vals for k, vals in wanted.items()) for c in files]
    train = [c for c, t in zip(files, is_test, strict=True) if not t]
    test = [c for c, t in zip(files, is_test, strict=True) if t]
    if not train or not test:
        raise DataError(f"{source}: data.test_groups {test_groups} leaves "
                        f"{len(train)} training and {len(test)} test samples; both must be non-empty")
    return train, test


def group_targets(train: list, test: list, names: list[str]) -> tuple[dict, dict]:
    """Class targets from regex groups: for each of `names`, `[N]` int64 indices of each item's
    value among the sorted training values (-1: a test value never seen in training, or none).

    Raises:
        ConfigError: a name that no training item has as a group.
    """
    train_out: dict[str, np.ndarray] = {}
    test_out: dict[str, np.ndarray] = {}
    for name in names:
        values = sorted({item.groups[name] for item in train if name in item.groups})
        if not values:
            raise ConfigError(f"data.probe_groups: '{name}' is not a named group of "
                              "data.label_regex (e.g. (?P<speaker>[a-z]+))")
        index = {v: i for i, v in enumerate(values)}
        for items, out in ((train, train_out), (test, test_out)):
            out[name] = np.asarray([index.get(item.groups.get(name), -1) for item in items],
                                   dtype=np.int64)
    return train_out, test_out


def training_classes(train: list, test: list, order: list[str] | None = None,
                     describe: Callable[[Any], object] = lambda item: item.path) -> list[str]:
    """The class names of the training items (`label` attribute), sorted or in the order of
    `order` (e.g. a bundle's `class_names`), checking that every test label is among them.

    Raises:
        DataError: a test label never occurs in training; names one such test item
            (`describe(item)`, its path by default).
    """
    labels = {item.label for item in train if item.label is not None}
    names = [n for n in order if n in labels] if order else sorted(labels)
    unseen = sorted({item.label for item in test if item.label is not None} - labels)
    if unseen:
        example = describe(next(item for item in test if item.label == unseen[0]))
        raise DataError(f"test label(s) {unseen[:5]} never occur in training (e.g. {example})")
    return names
