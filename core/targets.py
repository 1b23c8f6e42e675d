"""What a dataset's labels are: classes, or real-valued targets (regression).

Plugins read labels as strings; `decide_task` says which task they make (`data.task`: `auto`
reads a numeric column with many distinct values as a regression target), `as_targets` turns a
regression column into numbers. Downstream, the labels' dtype carries the task: integer class
indices (-1: unknown) or float targets (NaN: unknown), read by `is_regression`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from polyjepa.errors import DataError

TASKS = ("auto", "classification", "regression")
AUTO_DISTINCT = 20  # auto: a regression target has more distinct numbers than this ...
AUTO_SHARE = 0.25  # ... and than this share of the rows (or is fractional on half the rows)
log = logging.getLogger(__name__)


def _numbers(labels: Sequence[str]) -> np.ndarray | None:
    """The labels as float64 `[N]`, or None when one is not a finite number."""
    try:
        values = np.asarray([float(v) for v in labels], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return values if np.isfinite(values).all() else None


def decide_task(labels: Sequence[str], task: str, what: str, announce: bool = True) -> str:
    """`classification` or `regression` for a training set's labels under `data.task=task`.

    `auto`: regression when every label is a number and the distinct values outnumber both
    `AUTO_DISTINCT` and `AUTO_SHARE` of the rows, or are fractional and more than half the rows
    (a measurement); one log line says so and how to choose otherwise.

    Raises:
        DataError: `regression` asked of labels that are not all numbers (names the first).
    """
    values = _numbers(labels)
    if task == "regression":
        if values is None:
            bad = next(v for v in labels if _numbers([v]) is None)
            raise DataError(f"{what}: data.task=regression needs numbers as targets, found "
                            f"{bad!r}; name a numeric column or set data.task=classification")
        return task
    if task == "classification" or values is None or len(values) == 0:
        return "classification"
    distinct = len(np.unique(values))
    fractional = not np.array_equal(values, np.round(values))
    if (distinct > max(AUTO_DISTINCT, AUTO_SHARE * len(values))
            or (fractional and distinct > max(10, len(values) // 2))):
        if announce:
            log.warning("%s: the labels are %d distinct numbers in %d samples: read as a "
                        "regression target (ridge probes, R² and MAE); data.task=classification "
                        "reads them as classes", what, distinct, len(values))
        return "regression"
    return "classification"


def as_targets(labels: Sequence[str | None], what: str) -> np.ndarray:
    """Regression targets `[N]` float32 from label strings; None (no label) -> NaN.

    Raises:
        DataError: a label that is not a number (names it and `what`).
    """
    out = np.full(len(labels), np.nan, dtype=np.float32)
    for i, value in enumerate(labels):
        if value is None:
            continue
        number = _numbers([value])
        if number is None:
            raise DataError(f"{what}: target {value!r} (sample {i}) is not a number; a "
                            "regression target must be one for every labelled sample")
        out[i] = number[0]
    return out


def is_regression(y: np.ndarray) -> bool:
    """Float labels are regression targets; integer ones class indices."""
    return bool(np.issubdtype(np.asarray(y).dtype, np.floating))


def known_rows(y: np.ndarray) -> np.ndarray:
    """Indices of the labelled rows of `y` (`[N]`, or `[N, k]` targets): class index >= 0, or
    targets finite in every column."""
    y = np.asarray(y)
    known = np.isfinite(y) if is_regression(y) else y >= 0
    return np.flatnonzero(known.reshape(len(y), -1).all(axis=1))
