"""Probes on frozen embeddings, shared by evaluation and the trainer's online probe."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier, RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from polyjepa.data import eval_collate
from polyjepa.encoders import Backbone
from polyjepa.label_efficiency import ALPHAS, Budget, draw_subset, example_scores
from polyjepa.targets import is_regression

FEW_FRACTION = 0.1
"""The online probe's few-label budget for a regression target: this share of the training
targets (classes use `train.probe_shots` per class)."""


@torch.no_grad()
def embed(backbone: Backbone, dataset: Any, pooling: str, batch_size: int = 256,
          device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Pooled embeddings `[N, F]` and labels `[N]` of a dataset under a frozen backbone."""
    backbone = backbone.to(device).eval()
    # its own generator: starting an iterator must not draw from the global RNG, which drives
    # dropout in a training run this may be probing
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=eval_collate,
                        generator=torch.Generator())
    feats, labels = [], []
    for batch in loader:
        batch = batch.to(device)
        feats.append(backbone.embed(batch.x, pooling).float().cpu())
        labels.append(batch.y.cpu())
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 seed: int = 0) -> float:
    """Accuracy of logistic regression on standardised features."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(x_train, y_train)
    return float(model.score(x_test, y_test))


def regression_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     y_test: np.ndarray) -> tuple[float, float]:
    """`(R², MAE)` of ridge regression (penalty by cross-validation on the training rows) on
    standardised features; targets `[N]`."""
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    predicted = model.fit(x_train, y_train).predict(x_test)
    return float(r2_score(y_test, predicted)), float(mean_absolute_error(y_test, predicted))


def knn_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              k: int = 20) -> float:
    """Accuracy of a distance-weighted k-nearest-neighbour vote on standardised features (R² of
    the distance-weighted neighbours' mean for a regression target)."""
    k = min(k, len(x_train))
    knn = KNeighborsRegressor if is_regression(y_train) else KNeighborsClassifier
    model = make_pipeline(StandardScaler(), knn(k, weights="distance"))
    model.fit(x_train, y_train)
    return float(model.score(x_test, y_test))


def few_shot_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                   y_val: np.ndarray, shots: int, draws: int, seed: int = 0) -> float:
    """Mean validation accuracy of the label-efficiency probe (`label_efficiency.example_scores`)
    fitted on `shots` training labels per class, over `draws` seeded draws."""
    budget = Budget("shots", shots)
    return float(np.mean([
        example_scores(x_train[pick], y_train[pick], x_val, y_val, True, seed).mean()
        for pick in (draw_subset(y_train, budget, seed, d) for d in range(draws))]))


def online_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 k: int = 20, shots: int = 5, draws: int = 10) -> dict[str, float]:
    """The trainer's cheap probe on standardised features, scored on the validation split:
    `probe/knn` (distance-weighted kNN), `probe/linear` (a ridge classifier, closed form) and its
    squared error against the validation labels' ±1 codes, `probe/linear_mse` (continuous, it
    breaks ties of `train.select=val_probe`), and `probe/few_shot` (`few_shot_probe`: what
    `val_probe` selects by, the few-label regime pretraining is for). A regression target gets
    the same keys in R² (`_online_regression`)."""
    if len(np.unique(y_train)) < 2:
        return {}
    if is_regression(y_train):
        return _online_regression(x_train, y_train, x_val, y_val, k, draws)
    ridge = make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0)).fit(x_train, y_train)
    scores = ridge.decision_function(x_val)
    classes = ridge.classes_
    codes = np.where(y_val[:, None] == classes[None], 1.0, -1.0)  # [N, K]
    if scores.ndim == 1:  # two classes: one score, positive for classes[1]
        codes = codes[:, 1]
    return {"probe/knn": knn_probe(x_train, y_train, x_val, y_val, k),
            "probe/linear": float(ridge.score(x_val, y_val)),
            "probe/linear_mse": float(np.mean((scores - codes) ** 2)),
            "probe/few_shot": few_shot_probe(x_train, y_train, x_val, y_val, shots, draws)}


def _online_regression(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                       y_val: np.ndarray, k: int, draws: int) -> dict[str, float]:
    """`online_probe` for a regression target: `probe/knn`, `probe/linear` (ridge) and
    `probe/few_shot` (ridge on `FEW_FRACTION` of the training targets, over `draws` draws) in R²,
    `probe/linear_mse` the ridge's squared error over the targets' variance (lower is better),
    `probe/mae` its mean absolute error."""
    r2, mae = regression_probe(x_train, y_train, x_val, y_val)
    budget = Budget("fraction", FEW_FRACTION)
    few = float(np.mean([
        example_scores(x_train[pick], y_train[pick], x_val, y_val, False).mean()
        for pick in (draw_subset(y_train, budget, 0, d, classify=False) for d in range(draws))]))
    return {"probe/knn": knn_probe(x_train, y_train, x_val, y_val, k), "probe/linear": r2,
            "probe/linear_mse": 1.0 - r2, "probe/mae": mae, "probe/few_shot": few}
