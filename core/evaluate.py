"""Frozen-encoder evaluation, always beside two baselines on the same split.

Protocols (`eval.protocols`): `linear_probe` (logistic regression), `knn`, `svm` (linear SVM, C
chosen by cross-validation on the training split: Point-JEPA's and point2vec's protocol), and
`few_shot` (N-way K-shot episodes: a linear SVM on K labelled training samples per class, scored
on queries of the test split; mean and std over seeded episodes).

Baselines: the same architecture randomly initialised (what pretraining adds over the
architecture's inductive bias) and a probe on the raw features (what it adds over the input).

A modality may add protocols of its own (`ModalityPlugin.protocols`, e.g. time series'
`forecast` and `control`), listed in `eval.protocols` the same way; each gets the run and its
data and reports its own baselines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch.utils.data import DataLoader

from polyjepa import config as C
from polyjepa.build import build_backbone, load_datasets, recipe_from_dict
from polyjepa.data import eval_collate
from polyjepa.encoders import Backbone
from polyjepa.errors import ConfigError, DataError
from polyjepa.hub import load_encoder, read_export, read_run_config
from polyjepa.paths import data_root
from polyjepa.train import resolve_device, seed_everything

ENCODERS = ("pretrained", "random_init", "raw_features")
PROTOCOLS = ("linear_probe", "knn", "svm", "few_shot")


@torch.no_grad()
def embed(backbone: Backbone, dataset, pooling: str, batch_size: int = 256,
          device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Pooled embeddings `[N, F]` and labels `[N]` of a dataset under a frozen backbone."""
    backbone = backbone.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=eval_collate)
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


def svm_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              cs: list[float], folds: int = 5) -> tuple[float, float]:
    """Accuracy of a linear SVM on standardised features, and its C: the value of `cs` with the
    best mean accuracy in stratified `folds`-fold cross-validation on the training split (the
    only value when `cs` has one)."""
    model = make_pipeline(StandardScaler(), SVC(kernel="linear", C=cs[0]))
    counts = np.unique(y_train, return_counts=True)[1]
    folds = min(folds, int(counts.min()))
    if len(cs) > 1 and folds >= 2:
        search = GridSearchCV(model, {"svc__C": list(cs)},
                              cv=StratifiedKFold(folds, shuffle=True, random_state=0))
        model = search.fit(x_train, y_train).best_estimator_
    else:
        model.fit(x_train, y_train)
    return float(model.score(x_test, y_test)), float(model[-1].C)


def few_shot(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             ways: int, shots: int, queries: int, episodes: int, c: float,
             seed: int = 0) -> tuple[float, float]:
    """Mean and std accuracy over `episodes` N-way K-shot episodes.

    Each episode draws `ways` classes (among those with at least `shots` training and one test
    sample), `shots` training samples of each as the support set and up to `queries` test
    samples of each as queries, and fits a linear SVM (`C = c`) on the standardised support.

    Raises:
        DataError: fewer than `ways` classes have enough samples.
    """
    classes = [k for k in np.unique(y_train)
               if (y_train == k).sum() >= shots and (y_test == k).any()]
    if len(classes) < ways:
        raise DataError(f"few-shot {ways}-way {shots}-shot: only {len(classes)} classes have "
                        f"{shots} training samples and a test sample; lower eval.few_shot_ways "
                        "or eval.few_shot_shots")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(episodes):
        chosen = rng.choice(classes, size=ways, replace=False)
        support = np.concatenate([rng.choice(np.flatnonzero(y_train == k), shots, replace=False)
                                  for k in chosen])
        query = np.concatenate([rng.permutation(np.flatnonzero(y_test == k))[:queries]
                                for k in chosen])
        model = make_pipeline(StandardScaler(), SVC(kernel="linear", C=c))
        model.fit(x_train[support], y_train[support])
        scores.append(model.score(x_test[query], y_test[query]))
    return float(np.mean(scores)), float(np.std(scores))


def run_protocols(splits: dict, cfg, classes: int, protocols: list[str] | None = None) -> dict:
    """The classification `protocols` (default `cfg.protocols`) on each encoder's
    `((x_tr, y_tr), (x_te, y_te))`."""
    protocols = cfg.protocols if protocols is None else protocols
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ConfigError(f"eval.protocols: '{unknown[0]}' is not one of {', '.join(PROTOCOLS)}")
    result: dict = {p: {} for p in protocols if p != "few_shot"}
    if "few_shot" in protocols:
        ways = cfg.few_shot_ways or min(5, classes)
        result["few_shot"] = {f"{ways}way_{k}shot": {} for k in cfg.few_shot_shots}
    if "svm" in protocols or "few_shot" in protocols:
        result["svm_c"] = {}
    for name in ENCODERS:
        (x_tr, y_tr), (x_te, y_te) = splits[name]
        x_tr, y_tr = subsample(x_tr, y_tr, cfg.max_train, cfg.seed)
        if "linear_probe" in result:
            result["linear_probe"][name] = linear_probe(x_tr, y_tr, x_te, y_te, cfg.seed)
        if "knn" in result:
            result["knn"][name] = knn_probe(x_tr, y_tr, x_te, y_te, cfg.knn_k)
        if "svm_c" in result:
            acc, c = svm_probe(x_tr, y_tr, x_te, y_te, cfg.svm_c)
            result["svm_c"][name] = c
            if "svm" in result:
                result["svm"][name] = acc
        for key in result.get("few_shot", {}):
            shots = int(key.split("way_")[1].removesuffix("shot"))
            mean, std = few_shot(x_tr, y_tr, x_te, y_te, ways, shots, cfg.few_shot_queries,
                                 cfg.few_shot_episodes, result["svm_c"][name], cfg.seed)
            result["few_shot"][key][name] = {"mean": mean, "std": std}
    return result


def target_probes(splits: dict, train_targets: dict, test_targets: dict) -> dict:
    """Probe each encoder's features for a dataset's extra targets (`dataset.probe_targets()`:
    name -> `[N]` or `[N, k]` array, e.g. a video's speeds): integer targets by logistic
    regression (accuracy), real ones by ridge regression (R² on the test split, alpha by
    cross-validation on the training split).

    Returns:
        `{name: {"metric": "accuracy" | "r2", encoder: value, ...}}`.
    """
    from sklearn.linear_model import RidgeCV

    out = {}
    for name, y_tr in train_targets.items():
        y_te = test_targets[name]
        classify = np.issubdtype(np.asarray(y_tr).dtype, np.integer)
        row: dict = {"metric": "accuracy" if classify else "r2"}
        for encoder in ENCODERS:
            (x_tr, _), (x_te, _) = splits[encoder]
            if classify:
                row[encoder] = linear_probe(x_tr, y_tr, x_te, y_te)
            else:
                model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 7)))
                row[encoder] = float(model.fit(x_tr, y_tr).score(x_te, y_te))
        out[name] = row
    return out


def subsample(x: np.ndarray, y: np.ndarray, limit: int | None, seed: int):
    """At most `limit` rows of `(x, y)`, drawn without replacement with `seed`."""
    if limit is None or len(x) <= limit:
        return x, y
    keep = np.random.default_rng(seed).choice(len(x), size=limit, replace=False)
    return x[keep], y[keep]


def _features(backbone: Backbone, dataset, cfg, device) -> tuple[np.ndarray, np.ndarray]:
    return embed(backbone, dataset, cfg.pooling, cfg.batch_size, device)


def evaluate_run(run_dir: str | Path, data_path: str | None = None, device: str = "auto",
                 test_fraction: float = 0.2, overrides: list[str] = ()) -> dict:
    """Probe a run's exported encoder, a random-init twin and the raw features on one split.

    Without `data_path`, the recipe's train/test split; with it, that file read with the run's
    preprocessing and split (stratified, seeded by `eval.seed`) holding out `test_fraction`.
    `overrides` (`data.*`, `eval.*`) change how data is read and split, e.g. a speaker-disjoint
    split (`data.test_groups={speaker: [theo]}`); the encoder keeps its training preprocessing.

    Returns:
        `{"linear_probe": {name: acc}, "knn": {name: acc}, "n_train": int, "n_test": int}` for
        names `pretrained`, `random_init`, `raw_features`, and one entry per modality protocol
        listed (e.g. `forecast`: its own dict).
    """
    run_dir = Path(run_dir)
    C.check_override_scope(list(overrides), ("data", "eval"), "eval")
    recipe = recipe_from_dict(read_run_config(run_dir), str(run_dir / "config.yaml"),
                              list(overrides))
    cfg = recipe.cfg.eval
    own = recipe.plugin.protocols
    choices = [*PROTOCOLS, *own]
    if not cfg.protocols:
        raise ConfigError(f"eval.protocols: empty; list some of {', '.join(choices)}")
    unknown = [p for p in cfg.protocols if p not in choices]
    if unknown:
        raise ConfigError(f"eval.protocols: '{unknown[0]}' is not one of {', '.join(choices)}")
    classify = [p for p in cfg.protocols if p in PROTOCOLS]
    mine = [p for p in cfg.protocols if p in own]
    if mine and data_path is not None:
        raise ConfigError(f"eval --data: the protocols {mine} read the recipe's own data; "
                          "drop --data or list only " + ", ".join(PROTOCOLS))
    dev = resolve_device(device)
    result: dict = {}
    train_set = test_set = None
    if classify:
        result, train_set, test_set = _classify(run_dir, recipe, classify, data_path, dev,
                                                test_fraction)
    if mine:
        if train_set is None:
            train_set, test_set, _ = load_datasets(recipe)
        for name in mine:
            result[name] = own[name](run_dir=run_dir, recipe=recipe, train_set=train_set,
                                     test_set=test_set, device=dev)
        result.setdefault("n_train", len(train_set))
        result.setdefault("n_test", len(test_set))
    return result


def _classify(run_dir: Path, recipe, protocols: list[str], data_path: str | None,
              dev: torch.device, test_fraction: float) -> tuple[dict, object, object]:
    """The classification protocols for the pretrained, random-init and raw-feature encoders,
    and the recipe's datasets they read (None with `data_path`)."""
    cfg = recipe.cfg.eval
    blob, _ = read_export(run_dir)
    pretrained = load_encoder(run_dir, device=str(dev))
    seed_everything(recipe.cfg.train.seed + 1)
    random_init = build_backbone(recipe, blob["meta"])
    raw = recipe.plugin.raw_features
    train_set = test_set = None
    if data_path is None:
        train_set, test_set, _ = load_datasets(recipe)
        splits = {
            "pretrained": (_features(pretrained, train_set, cfg, dev),
                           _features(pretrained, test_set, cfg, dev)),
            "random_init": (_features(random_init, train_set, cfg, dev),
                            _features(random_init, test_set, cfg, dev)),
        }
        y_train, y_test = splits["pretrained"][0][1], splits["pretrained"][1][1]
        splits["raw_features"] = ((raw(train_set).numpy(), y_train), (raw(test_set).numpy(), y_test))
    else:
        dataset = recipe.plugin.load_file(recipe.cfg.data, data_path,
                                          data_root(recipe.cfg.data_root), blob["meta"])
        full = {"pretrained": _features(pretrained, dataset, cfg, dev),
                "random_init": _features(random_init, dataset, cfg, dev)}
        y = full["pretrained"][1]
        full["raw_features"] = (raw(dataset).numpy(), y)
        train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                               random_state=cfg.seed, stratify=y)
        splits = {name: ((x[train_idx], y[train_idx]), (x[test_idx], y[test_idx]))
                  for name, (x, y) in full.items()}
    y_all = np.concatenate([splits["pretrained"][0][1], splits["pretrained"][1][1]])
    if (y_all < 0).any():
        raise DataError(f"{recipe.source}: evaluation needs labels, and some samples have none")
    result = run_protocols(splits, cfg, len(np.unique(y_all)), protocols)
    if data_path is None and hasattr(train_set, "probe_targets"):
        result["targets"] = target_probes(splits, train_set.probe_targets(),
                                          test_set.probe_targets())
    result["n_train"] = int(len(splits["pretrained"][0][1]))
    result["n_test"] = int(len(splits["pretrained"][1][1]))
    return result, train_set, test_set


def format_table(result: dict) -> str:
    """A plain-text table of an `evaluate_run` result."""
    scalar = [p for p in ("linear_probe", "knn", "svm") if p in result]
    lines = []
    if scalar:
        lines.append(f"{'encoder':<14}" + "".join(f"{p:>14}" for p in scalar))
        for name in ENCODERS:
            lines.append(f"{name:<14}" + "".join(f"{result[p][name]:>14.4f}" for p in scalar))
    for name, row in result.get("targets", {}).items():
        lines.append(f"target {name} ({row['metric']}): " + ", ".join(
            f"{encoder} {row[encoder]:.4f}" for encoder in ENCODERS))
    for episode, scores in result.get("few_shot", {}).items():
        lines.append(f"few-shot {episode}: " + ", ".join(
            f"{name} {s['mean']:.4f} ± {s['std']:.4f}" for name, s in scores.items()))
    for name, value in result.items():
        if isinstance(value, dict) and "table" in value:
            lines += [f"{name}:", *_rows(value["table"])]
    lines.append(f"(n_train={result['n_train']}, n_test={result['n_test']})")
    return "\n".join(lines)


def _rows(rows: list[dict]) -> list[str]:
    """Rows of dicts as aligned text lines, a header first."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()] for row in rows]
    header = list(rows[0])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    return ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))] + [
        "  ".join(c.rjust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
