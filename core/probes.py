"""Probes on frozen embeddings, shared by evaluation and the trainer's online probe."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from polyjepa.data import eval_collate
from polyjepa.encoders import Backbone
from polyjepa.label_efficiency import Budget, draw_subset, example_scores


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


def knn_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              k: int = 20) -> float:
    """Accuracy of a distance-weighted k-nearest-neighbour vote on standardised features."""
    k = min(k, len(x_train))
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(k, weights="distance"))
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
    `val_probe` selects by, the few-label regime pretraining is for)."""
    if len(np.unique(y_train)) < 2:
        return {}
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
