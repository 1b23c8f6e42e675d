"""MiniRocket, the time-series field's label-free baseline (Dempster, Schmidt and Webb, KDD 2021,
arXiv:2012.08791), in aeon's implementation: `polyjepa eval` probes its features beside the
encoders' and the raw values (`ModalityPlugin.baselines`). aeon comes with
`pip install 'polyjepa[timeseries]'`; without it the baseline is skipped."""

from __future__ import annotations

import numpy as np

from polyjepa.contracts import Featurizer
from polyjepa.extras import require
from polyjepa.modalities.timeseries.preprocess import SeriesArrays

MIN_STEPS = 9
"""MiniRocket's kernels span 9 steps; it refuses shorter series."""
KERNELS = 10_000
"""aeon's and the paper's default: 9,996 features (a multiple of its 84 kernels)."""


def minirocket(dataset: SeriesArrays, rows: np.ndarray, seed: int) -> Featurizer:
    """MiniRocket fitted on the series `rows` of `dataset` (its dilations and biases: the
    biases are quantiles of convolutions of training series; labels are never read), seeded
    by `seed`; the returned featurizer maps a dataset to `[N, 9996]` float32 features.

    It reads the series as the encoders do (`_series`): aeon's MiniRocket needs one length, so
    a series shorter than the run's length is read with the zeros it is padded with beyond its
    `lengths` (after standardisation, zero is the mean); series shorter than 9 steps are
    zero-padded at the end to 9.

    Raises:
        MissingExtraError: aeon is not installed.
    """
    aeon = require("aeon.transformations.collection.convolution_based", "timeseries",
                   "the MiniRocket baseline")
    transform = aeon.MiniRocket(n_kernels=KERNELS, random_state=seed)
    transform.fit(_series(dataset)[rows])
    return lambda data: np.asarray(transform.transform(_series(data)), dtype=np.float32)


def _series(dataset: SeriesArrays) -> np.ndarray:
    """The scaled values `[N, C, max(T, 9)]` float32, zero beyond each series' length and, when
    `T < 9`, zero-padded at the end to MiniRocket's 9 steps."""
    values = dataset.values.numpy()
    short = max(MIN_STEPS - values.shape[2], 0)
    return np.pad(values, ((0, 0), (0, 0), (0, short)))
