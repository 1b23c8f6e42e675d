"""Where data lives (recipes name datasets relative to a data root), and writing results whole."""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from polyjepa.config import RecipeConfig, path_keys, unlabelled_paths
from polyjepa.errors import ConfigError, DataError

DATA_ROOT_ENV = "POLYJEPA_DATA_ROOT"


def data_root(configured: str | None) -> Path | None:
    """The data root: the recipe's `data_root` if set (and, for a root a run stored, still
    there), else `$POLYJEPA_DATA_ROOT`, else None."""
    env = os.environ.get(DATA_ROOT_ENV)
    if configured and (Path(configured).expanduser().is_dir() or not env):
        return Path(configured).expanduser()
    return Path(env).expanduser() if env else None


def resolve_path(path: str | Path, root: Path | None, field: str) -> Path:
    """Resolve a data path named by config field `field` (e.g. `data.path`).

    Absolute paths and paths that exist relative to the working directory are used as they are;
    other relative paths are looked up under the data root.

    Raises:
        DataError: the file does not exist; the message says which root was searched and which
            variable or key sets it.
    """
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        if not path.exists():
            raise DataError(f"{field}: no such file or folder: {path}")
        return path
    if root is None:
        raise DataError(
            f"{field}: '{path}' is relative and not found in the working directory, and no data "
            f"root is set: set the environment variable {DATA_ROOT_ENV} (e.g. "
            f"{DATA_ROOT_ENV}=../shared/data) or the recipe key data_root=DIR"
        )
    if not root.is_dir():
        raise DataError(f"data root '{root}' (from data_root or {DATA_ROOT_ENV}) is not a folder")
    full = root / path
    if not full.exists():
        raise DataError(f"{field}: no such file or folder: {full} (data root '{root}')")
    return full


def pin_paths(cfg: RecipeConfig) -> list[str]:
    """Make a recipe's data paths absolute in place (`cfg`: a `RecipeConfig`): `data_root` (or
    $POLYJEPA_DATA_ROOT, which a later command may not have) and each of the data section's
    `path_keys` that names a file or folder relative to the working directory. Names such as
    `builtin:adult-train` and paths under the data root stay as written.

    Returns:
        `key=original` for each value changed, to show how the run was given its data.
    """
    changed = []
    root = data_root(cfg.data_root)
    if root is not None and str(root.resolve()) != cfg.data_root:
        changed.append(f"data_root={cfg.data_root or '$' + DATA_ROOT_ENV}")
        cfg.data_root = str(root.resolve())
    for key in path_keys(cfg):
        value = getattr(cfg.data, key)
        if not isinstance(value, str) or not value or is_name(value):
            continue
        path = Path(value).expanduser()
        if not path.is_absolute() and path.exists():
            setattr(cfg.data, key, str(path.resolve()))
            changed.append(f"data.{key}={value}")
    return changed + _pin_unlabelled(cfg)


def expand_pattern(spec: str, root: Path | None, field: str) -> list[str]:
    """The paths a glob pattern names (`*`, `?`, `[...]`; `**` spans folders), sorted, tried in
    the working directory, then under the data root; `[spec]` itself when it is no pattern.

    Raises:
        DataError: the pattern matches nothing; names `field`.
    """
    if not glob.has_magic(spec):
        return [spec]
    pattern = os.path.expanduser(spec)
    matches = sorted(glob.glob(pattern, recursive=True))
    where = "the working directory"
    if not matches and root is not None and not os.path.isabs(pattern):
        matches = sorted(glob.glob(str(root / pattern), recursive=True))
        where += f" or the data root '{root}'"
    if not matches:
        raise DataError(f"{field}: the pattern '{spec}' matches nothing in {where}; check it, "
                        "or give a folder")
    return matches


def _pin_unlabelled(cfg: RecipeConfig) -> list[str]:
    """`data.unlabelled` entries made absolute where they name paths of the working directory
    (a pattern too, when it matches there)."""
    entries = unlabelled_paths(cfg)
    pinned = []
    for value in entries:
        path = os.path.expanduser(value)
        here = glob.glob(path, recursive=True) if glob.has_magic(path) else os.path.exists(path)
        pinned.append(os.path.abspath(path) if here and not os.path.isabs(path) else value)
    if pinned == entries:
        return []
    cfg.data.unlabelled = pinned  # type: ignore[attr-defined]  # unlabelled_paths checked
    return [f"data.unlabelled={entries}"]


def is_name(value: str) -> bool:
    """`builtin:NAME`, `sklearn:NAME`: a dataset named by a reader, not a path."""
    scheme, colon, _ = value.partition(":")
    return bool(colon) and scheme.isidentifier() and len(scheme) > 1


def check_output_folder(path: Path, flag: str = "--out") -> None:
    """A folder a command will create or write into must not be a file (nor lie under one).

    Raises:
        ConfigError: naming the file in the way and another choice.
    """
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise ConfigError(f"{flag} {path}: {part} is a file, not a folder; name a folder for "
                              f"the run, e.g. {flag} {part.with_name(part.name + '_run')}")
        if part.exists():
            return


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `data` (bytes, or a function writing to the open file) to a temporary file beside
    `path`, fsync, then rename it over `path`: a reader, a crash or a full disk never leaves half
    a file. The file is readable by all (0644), as results in a shared run folder should be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_dict(path: Path) -> dict:
    """The JSON object in `path`, or {} when the file is missing, unreadable, torn or holds
    something else (run.json and eval files read for reports, exports and trackers)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
