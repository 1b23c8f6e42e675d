"""The `data:` section of a time-series recipe."""

from __future__ import annotations

from dataclasses import dataclass, field

from polyjepa.config import DataConfig
from polyjepa.modalities.timeseries.cartpole import CartPoleConfig


@dataclass
class TimeSeriesDataConfig(DataConfig):
    """Where the series come from and how they are read, aligned and scaled."""

    # A UCR/UEA `.ts` file (its `_TEST` twin is found beside a `_TRAIN` file), a CSV/TSV/Parquet
    # table (wide: one row per series; long: one row per time step), a `.npy`/`.npz` array
    # `[N, C, T]` (`.npz`: `x`, optional `y`), or "builtin:cartpole" (simulated trajectories with
    # actions, see `cartpole`); relative paths are looked up under the data root.
    path_keys = ("path", "test_path")
    dataset_keys = {"test_path": None, "label_column": "label", "value_columns": None}

    path: str = ""
    # Held-out file in the same format; None -> the `_TEST` twin of a `_TRAIN` file, else a
    # seeded stratified split of `path` holding out `test_fraction`.
    test_path: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    # Tables: "wide" | "long" | "auto" (long when `id_column` and `time_column` both exist).
    layout: str = "auto"
    # Tables: the class column (None: unlabelled); constant within a series in long tables.
    label_column: str | None = "label"
    # Long tables: which series a row belongs to, and its time (rows are ordered by it).
    id_column: str = "id"
    time_column: str = "time"
    # Long tables: the observed channels; None -> every numeric column but id, time, label and
    # the actions.
    value_columns: list[str] | None = None
    # Long tables: channels that are control actions / exogenous inputs (fed to the predictor of
    # action-conditioned recipes, not encoded); `.npz` files hold them as `actions [N, A, T]`.
    action_columns: list[str] = field(default_factory=list)
    # Cut every series into windows of this many steps, `window_stride` apart (each a sample
    # with its series' label; a shorter series is one window). None keeps whole series.
    window: int | None = None
    window_stride: int | None = None  # None -> window (no overlap)
    # Length every series is brought to; None -> the longest training series (or `window`).
    length: int | None = None
    # Series of other lengths: "pad" (at the end, with a padding mask the encoder respects; longer
    # ones are cut), "resample" (linear interpolation to `length`) or "auto" (pad, but first
    # stretch series shorter than a fifth of `length` to that fifth, so that a patch tokenizer
    # finds at least two patches in each; one warning counts them).
    length_policy: str = "auto"
    # "per_series" (each channel of each series to zero mean, unit std), "per_dataset" (each
    # channel with training statistics) or "none".
    standardize: str = "per_dataset"
    # Missing values (`?`, NaN, empty cells) inside a series are linearly interpolated from their
    # channel's observed values; a channel with no observed value is an error.
    # A series that fails to load: "raise" (naming it) or "skip" (counted).
    on_error: str = "raise"
    # The simulator's settings for "builtin:cartpole" (trajectories, noise, seed).
    cartpole: CartPoleConfig = field(default_factory=CartPoleConfig)
