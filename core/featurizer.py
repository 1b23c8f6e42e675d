"""`polyjepa.Featurizer`: a run's frozen encoder as a scikit-learn transformer.

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> model = make_pipeline(polyjepa.Featurizer("runs/rows"), StandardScaler(),
    ...                       LogisticRegression())         # scale: embeddings may be tiny
    >>> cross_val_score(model, rows, labels)          # rows: a DataFrame, an array, paths
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from polyjepa.embedding import EncoderRun


class Featurizer(TransformerMixin, BaseEstimator):
    """Pooled embeddings `[N, F]` of a run's exported encoder, for scikit-learn.

    The encoder is pretrained: `fit` only loads it (once per clone), `transform` embeds any data
    `polyjepa.embed` takes — a DataFrame with the training table's columns, an array (a table's
    feature columns `[N, F]`, series `[N, C, T]`), a list of sample files — read with the run's
    preprocessing. Plain parameters, so `clone`, `Pipeline`, `GridSearchCV` and
    `cross_val_score` work; `set_output(transform="pandas")` names the columns
    `get_feature_names_out` gives. Embeddings are not standardised (a pretrained encoder's may
    have a spread of 0.01): put a `StandardScaler` before a linear model, as polyjepa's probes do.

    Args:
        run: a run directory or its `encoder.pt`.
        pooling: `eval.pooling` of the run's recipe unless given.
        device: `auto` (CUDA when present), `cpu`, `cuda`, ...
        batch_size: `eval.batch_size` of the run's recipe unless given.
        overrides: `data.KEY=VALUE` settings that say how to read the data.
    """

    def __init__(self, run: str | Path, pooling: str | None = None, device: str = "auto",
                 batch_size: int | None = None, overrides: list[str] | None = None) -> None:
        self.run = run
        self.pooling = pooling
        self.device = device
        self.batch_size = batch_size
        self.overrides = overrides

    def fit(self, X: Any = None, y: Any = None) -> Featurizer:  # noqa: N803 (scikit-learn's names)
        """Load the encoder (nothing is learnt: it is pretrained)."""
        self.encoder_ = EncoderRun.load(self.run, self.device, self.overrides)
        self.n_features_out_ = self.encoder_.width(self.pooling)
        return self

    def transform(self, X: Any) -> np.ndarray:  # noqa: N803
        """`[N, F]` float32 embeddings of `X`, in its order."""
        check_is_fitted(self, "encoder_")
        return self.encoder_.embed(X, self.pooling, self.batch_size).x

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """`polyjepa0`, `polyjepa1`, ... (F names)."""
        check_is_fitted(self, "n_features_out_")
        return np.asarray([f"polyjepa{i}" for i in range(self.n_features_out_)], dtype=object)

    def __getstate__(self) -> dict:
        """Pickled (joblib workers, `cross_val_score(n_jobs=...)`) without the loaded encoder,
        which the copy loads again on first use."""
        state = dict(super().__getstate__())
        state.pop("encoder_", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "n_features_out_" in state:
            self.encoder_ = EncoderRun.load(self.run, self.device, self.overrides)
