"""Frozen-encoder evaluation, always beside two baselines on the same split.

Protocols (`eval.protocols`): `linear_probe` (logistic regression), `knn`, `svm` (linear SVM, C
chosen by cross-validation on the training split: Point-JEPA's and point2vec's protocol), and
`few_shot` (N-way K-shot episodes: a linear SVM on K labelled training samples per class, scored
on queries of the test split; mean and std over seeded episodes).

`label_efficiency` (see `polyjepa.label_efficiency`): logistic-regression probes trained on
`eval.shots` labels per class and `eval.fractions` of the labels, `eval.draws` seeded draws each,
the same draws for every encoder; means with 95 % intervals, the paired difference pretrained −
random init and a verdict (`helps` / `no difference` / `hurts`) per budget.

Baselines: the same architecture randomly initialised (what pretraining adds over the
architecture's inductive bias; `eval.init_seeds` initialisations, every protocol reports their
mean and `random_init_each` each one), a probe on the raw features (what it adds over the input)
and the modality's label-free baselines (`ModalityPlugin.baselines`, e.g. time series'
MiniRocket: what it adds over the field's own unsupervised features), each fitted on the
training split without its labels and scored as one more encoder, listed under `baselines`.

A modality may add protocols of its own (`ModalityPlugin.protocols`, e.g. time series'
`forecast` and `control`), listed in `eval.protocols` the same way; each gets the run and its
data and reports its own baselines.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from tqdm.auto import tqdm

from polyjepa import config as C
from polyjepa import label_efficiency as LE
from polyjepa.build import Recipe, Splits, build_backbone, load_splits, recipe_from_dict
from polyjepa.contracts import Baseline, Featurizer, HasProbeTargets
from polyjepa.data import DataSplit, dataset_labels, whole
from polyjepa.encoders import Backbone
from polyjepa.errors import CheckpointError, ConfigError, ContractError, DataError, MissingExtraError
from polyjepa.hub import ENCODER_FILE, encoder_from_blob, read_any, read_run_config
from polyjepa.paths import data_root, write_atomic
from polyjepa.probes import embed, knn_probe, linear_probe, regression_probe
from polyjepa.targets import is_regression, known_rows
from polyjepa.train import kept_encoder_path, kept_steps, resolve_device, seed_everything

log = logging.getLogger(__name__)

ENCODERS = ("pretrained", "random_init", "raw_features")
OWN_INIT = "own_init"
"""The run's own step-0 encoder (`checkpoints/encoder_step_0.pt`, kept when the run probes): the
random network pretraining started from. Paired with it, the difference is what pretraining
changed in this network; the `random_init` baseline (other initialisations) also carries how lucky
this run's initialisation was, which the interval over label draws does not cover."""
PROTOCOLS = ("linear_probe", "knn", "svm", "few_shot", "label_efficiency")


SCALARS = ("linear_probe", "linear_probe_mae", "knn", "svm")
"""The protocols a result holds one number per encoder of (`linear_probe_mae`: regression)."""


def metric_name(result: dict) -> str:
    """What a result's probes score: `accuracy`, or `R²` for a regression target."""
    return "R²" if result.get("metric") == "r2" else "accuracy"


def encoder_names(result: dict) -> list[str]:
    """The encoders a result scores: `ENCODERS`, then the modality's label-free baselines
    (`result["baselines"]`, absent when it has none)."""
    return [*ENCODERS, *result.get("baselines", [])]


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
    Where the data has fewer such classes, `ways` and then `shots` shrink to what it has (one
    warning says so).

    Raises:
        DataError: fewer than two classes have a training and a test sample.
    """
    present = [k for k in np.unique(y_train) if (y_test == k).any()]
    if len(present) < 2:
        raise DataError(f"few-shot: {len(present)} class(es) have both training and test "
                        "samples; few-shot episodes need two")
    sizes = sorted(((y_train == k).sum() for k in present), reverse=True)
    fit_ways = min(ways, len(present))
    fit_shots = min(shots, int(sizes[fit_ways - 1]))
    if (fit_ways, fit_shots) != (ways, shots):
        warnings.warn(f"few-shot {ways}-way {shots}-shot: the data has {len(present)} classes "
                      f"with test samples, and {fit_ways} of them have at least "
                      f"{sizes[fit_ways - 1]} training samples; episodes are {fit_ways}-way "
                      f"{fit_shots}-shot instead (set eval.few_shot_ways / eval.few_shot_shots "
                      "to silence this)", stacklevel=2)
        ways, shots = fit_ways, fit_shots
    classes = [k for k in present if (y_train == k).sum() >= shots]
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


def _mean_each(values: list[float]) -> tuple[float, list[float]]:
    return float(np.mean(values)), [float(v) for v in values]


def run_protocols(features: LE.Features, y_train: np.ndarray, y_test: np.ndarray, cfg: C.EvalConfig,
                  classes: int, protocols: list[str] | None = None,
                  linear: dict[str, list[float]] | None = None) -> dict:
    """The classification `protocols` (default `cfg.protocols`) for every encoder of `features`
    (name -> one `(x_train, x_test)` pair per initialisation); an encoder with several pairs
    (random init) reports their mean, and each value under `random_init_each`. `linear`: the
    linear probe's accuracies per encoder and initialisation where they are already known (the
    label-efficiency budget of every label fits the same probe), not fitted again."""
    protocols = cfg.protocols if protocols is None else protocols
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ConfigError(f"eval.protocols: '{unknown[0]}' is not one of {', '.join(PROTOCOLS)}")
    if is_regression(y_train):
        return regression_protocols(features, y_train, y_test, cfg, protocols)
    scalar = [p for p in ("linear_probe", "knn", "svm") if p in protocols]
    result: dict = {p: {} for p in scalar}
    each: dict = {}
    if "few_shot" in protocols:
        ways = cfg.few_shot_ways or min(5, classes)
        result["few_shot"] = {f"{ways}way_{k}shot": {} for k in cfg.few_shot_shots}
    if "svm" in protocols or "few_shot" in protocols:
        result["svm_c"] = {}
    keep = subsample_indices(len(y_train), cfg.max_train, cfg.seed)
    y_tr = y_train[keep]
    for name, pairs in features.items():
        scores: dict[str, list] = {p: [] for p in (*scalar, "svm_c", *result.get("few_shot", {}))}
        for x_train, x_te in pairs:
            x_tr = x_train[keep]
            if "linear_probe" in result and linear is None:
                scores["linear_probe"].append(linear_probe(x_tr, y_tr, x_te, y_test, cfg.seed))
            if "knn" in result:
                scores["knn"].append(knn_probe(x_tr, y_tr, x_te, y_test, cfg.knn_k))
            if "svm_c" in result:
                acc, c = svm_probe(x_tr, y_tr, x_te, y_test, cfg.svm_c)
                scores["svm_c"].append(c)
                if "svm" in result:
                    scores["svm"].append(acc)
                for key in result.get("few_shot", {}):
                    shots = int(key.split("way_")[1].removesuffix("shot"))
                    scores[key].append(few_shot(x_tr, y_tr, x_te, y_test, ways, shots,
                                                cfg.few_shot_queries, cfg.few_shot_episodes, c,
                                                cfg.seed))
        if linear is not None and "linear_probe" in result:
            scores["linear_probe"] = linear[name]
        for p in scalar:
            result[p][name], values = _mean_each(scores[p])
            if len(pairs) > 1:
                each.setdefault(p, values)
        if "svm_c" in result:
            result["svm_c"][name] = scores["svm_c"][0]
        for key in result.get("few_shot", {}):
            means, stds = zip(*scores[key], strict=True)
            result["few_shot"][key][name] = {"mean": float(np.mean(means)),
                                             "std": float(np.mean(stds))}
    if each:
        result["random_init_each"] = each
    return result


def regression_protocols(features: LE.Features, y_train: np.ndarray, y_test: np.ndarray,
                         cfg: C.EvalConfig, protocols: list[str]) -> dict:
    """`run_protocols` for a regression target: `linear_probe` (ridge regression, R², and its
    mean absolute error as `linear_probe_mae`) and `knn` (R²); `svm` and `few_shot` are class
    protocols, left out with one log line. `metric: "r2"` marks the result."""
    dropped = [p for p in protocols if p in ("svm", "few_shot")]
    if dropped:
        log.warning("eval: %s classify; the target is real-valued, so they are left out",
                 " and ".join(dropped))
    keep = subsample_indices(len(y_train), cfg.max_train, cfg.seed)
    y_tr = y_train[keep]
    result: dict = {"metric": "r2"}
    each: dict = {}
    for name, pairs in features.items():
        scores: dict[str, list[float]] = {}
        for x_train, x_te in pairs:
            if "linear_probe" in protocols:
                r2, mae = regression_probe(x_train[keep], y_tr, x_te, y_test)
                scores.setdefault("linear_probe", []).append(r2)
                scores.setdefault("linear_probe_mae", []).append(mae)
            if "knn" in protocols:
                scores.setdefault("knn", []).append(
                    knn_probe(x_train[keep], y_tr, x_te, y_test, cfg.knn_k))
        for p, values in scores.items():
            result.setdefault(p, {})[name], values = _mean_each(values)
            if len(pairs) > 1:
                each.setdefault(p, values)
    if each:
        result["random_init_each"] = each
    return result


def target_probes(features: LE.Features, train_targets: dict, test_targets: dict) -> dict:
    """Probe each encoder's features for a dataset's extra targets (`dataset.probe_targets()`:
    name -> `[N]` or `[N, k]` array, e.g. a video's speeds): integer targets by logistic
    regression (accuracy), real ones by ridge regression (R² on the test split, alpha by
    cross-validation on the training split); an encoder with several initialisations reports
    their mean.

    Returns:
        `{name: {"metric": "accuracy" | "r2", encoder: value, ...}}`.
    """
    out = {}
    for name, y_tr in train_targets.items():
        (tr, y_tr), (te, y_te) = known(y_tr), known(test_targets[name])
        classify = is_class_target(y_tr)
        row: dict = {"metric": "accuracy" if classify else "r2"}
        for encoder, pairs in features.items():
            row[encoder] = float(np.mean([
                LE.example_scores(x_tr[tr], y_tr, x_te[te], y_te, classify).mean()
                for x_tr, x_te in pairs]))
        out[name] = row
    return out


def known(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(rows, y[rows])` of the rows with a known target: class -1 and NaN targets are unknown."""
    y = np.asarray(y)
    rows = known_rows(y)
    return rows, y[rows]


def is_class_target(y: np.ndarray) -> bool:
    """Integer targets are classes (probed by accuracy), real ones are regressed (R²)."""
    return not is_regression(y)


def subsample_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of at most `limit` of `n` rows, drawn without replacement with `seed` (all rows,
    in order, when `limit` is None or not smaller)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def subsample(x: np.ndarray, y: np.ndarray, limit: int | None, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """At most `limit` rows of `(x, y)`, drawn without replacement with `seed`."""
    keep = subsample_indices(len(x), limit, seed)
    return x[keep], y[keep]


def _features(backbone: Backbone, dataset: Any, cfg: C.EvalConfig, device: torch.device
              ) -> tuple[np.ndarray, np.ndarray]:
    return embed(backbone, dataset, cfg.pooling, cfg.batch_size, device)


def per_parent(featurize: Featurizer, *datasets: Any) -> list[np.ndarray]:
    """`featurize`'s features `[N, F]` of each dataset; splits of one parent (a training part
    and its validation split) slice the parent's, computed once."""
    parents: dict[int, np.ndarray] = {}

    def of(dataset: Any) -> np.ndarray:
        source = whole(dataset)
        if id(source) not in parents:
            parents[id(source)] = featurize(source)
        x = parents[id(source)]
        return x[dataset.indices] if isinstance(dataset, DataSplit) else x

    return [of(d) for d in datasets]


def raw_features(recipe: Recipe, *datasets: Any) -> list[np.ndarray]:
    """The plugin's raw features `[N, F]` of each dataset (`per_parent`)."""
    return per_parent(lambda dataset: recipe.plugin.raw_features(dataset).numpy(), *datasets)


def baseline_features(baselines: dict[str, Baseline], train_set: Any, test_set: Any, seed: int
                      ) -> LE.Features:
    """The modality's label-free baselines, each fitted with `seed` on the training split's
    samples (never their labels) and applied to both splits: name -> `[(x_train [N, F],
    x_test [M, F])]`. A baseline whose optional package is missing is skipped with one logged
    line naming the install.

    Raises:
        ContractError: a baseline is named like one of `ENCODERS`.
    """
    rows = train_set.indices if isinstance(train_set, DataSplit) else np.arange(len(train_set))
    out: LE.Features = {}
    for name, baseline in baselines.items():
        if name in ENCODERS:
            raise ContractError(f"the modality's baseline '{name}' is named like one of "
                                f"{', '.join(ENCODERS)}; rename it")
        try:
            featurize = baseline(whole(train_set), rows, seed)
        except MissingExtraError as exc:
            log.warning("eval: the %s baseline is skipped: %s", name, exc)
            continue
        x_train, x_test = per_parent(featurize, train_set, test_set)
        out[name] = [(x_train, x_test)]
    return out


def encoder_file(run_dir: Path, checkpoint: int | None) -> Path:
    """The run's exported encoder, or the one kept at step `checkpoint`.

    Raises:
        CheckpointError: no encoder was kept at that step (the message lists those kept).
    """
    if checkpoint is None:
        return run_dir / ENCODER_FILE
    path = kept_encoder_path(run_dir, checkpoint)
    if not path.is_file():
        kept = kept_steps(run_dir)
        raise CheckpointError(
            f"--checkpoint {checkpoint}: no encoder was kept at that step in {run_dir}; kept "
            f"steps: {', '.join(map(str, kept)) or 'none'} (train.keep_checkpoints / "
            "train.keep_every keep them)")
    return path


def evaluate_run(run_dir: str | Path, data_path: str | None = None, device: str = "auto",
                 test_fraction: float = 0.2, overrides: Sequence[str] = (),
                 checkpoint: int | None = None, progress: bool = False) -> dict:
    """Probe a run's exported encoder, random-init twins and the raw features on one split.

    Without `data_path`, the recipe's train/test split (`eval.split=val`: its training part and
    validation split); with it, that file read with the run's preprocessing and split (stratified,
    seeded by `eval.seed`) holding out `test_fraction`. `overrides` (`data.*`, `eval.*`) change
    how data is read and split, e.g. a speaker-disjoint split
    (`data.test_groups={speaker: [theo]}`); the encoder keeps its training preprocessing.
    `checkpoint` evaluates the encoder kept at that step (`train.keep_checkpoints`).

    Returns:
        `{"linear_probe": {name: acc}, "knn": {name: acc}, "n_train": int, "n_test": int}` for
        names `pretrained`, `random_init`, `raw_features` and each of the modality's label-free
        baselines (listed under `baselines` when it has some, e.g. `["minirocket"]`), plus
        `random_init_each` (each initialisation's score), `label_efficiency` and one entry per
        modality protocol listed (e.g. `forecast`: its own dict).
    """
    return _evaluate(Path(run_dir), data_path, device, test_fraction, list(overrides), checkpoint,
                     progress)[0]


def _evaluate(run_dir: Path, data_path: str | None, device: str, test_fraction: float,
              overrides: list[str], checkpoint: int | None, progress: bool
              ) -> tuple[dict, dict[str, tuple[list[LE.BudgetScores], str, np.ndarray]]]:
    """`evaluate_run`'s result, and its label-efficiency scores by target (`label` for the class
    labels): `(budget scores, metric, test targets they were scored on)`, for pooling runs."""
    C.check_override_scope(overrides, ("data", "eval"), "eval")
    recipe = recipe_from_dict(read_run_config(run_dir), str(run_dir / "config.yaml"), overrides)
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
    if (mine or cfg.split == "val") and data_path is not None:
        what = f"the protocols {mine} read" if mine else "eval.split=val splits"
        raise ConfigError(f"eval --data: {what} the recipe's own data; drop --data or list only "
                          + ", ".join(PROTOCOLS))
    if mine and checkpoint is not None:
        raise ConfigError(f"eval --checkpoint: the protocols {mine} read the run's final state; "
                          "list only " + ", ".join(PROTOCOLS))
    dev = resolve_device(device)
    result: dict = {}
    scores: dict = {}
    splits = None
    if classify:
        result, scores, splits = _classify(run_dir, recipe, classify, data_path, dev,
                                           test_fraction, checkpoint, progress)
    if mine:
        if splits is None:
            splits = load_splits(recipe)
        for name in mine:
            _say(progress, f"eval: {name}")
            result[name] = own[name](run_dir=run_dir, recipe=recipe, train_set=whole(splits.train),
                                     test_set=splits.test, device=dev)
        result.setdefault("n_train", len(splits.train))
        result.setdefault("n_test", len(splits.test))
    if checkpoint is not None:
        result["checkpoint"] = checkpoint
    else:
        selection = _selection(run_dir)
        if selection is not None:
            result["selection"] = selection
    return result, scores


def _selection(run_dir: Path) -> dict | None:
    """`run.json`'s `selection` (`train.select`): which step `encoder.pt` holds and why."""
    info = run_dir / "run.json"
    if not info.is_file():
        return None
    return json.loads(info.read_text()).get("selection")


def _say(progress: bool, text: str) -> None:
    if progress:
        tqdm.write(text)


def _classify(run_dir: Path, recipe: Recipe, protocols: list[str], data_path: str | None,
              dev: torch.device, test_fraction: float, checkpoint: int | None, progress: bool
              ) -> tuple[dict, dict, Splits | None]:
    """The classification protocols for the pretrained, random-init and raw-feature encoders and
    the modality's baselines; their label-efficiency scores; and the recipe's splits they read
    (None with `data_path`)."""
    cfg = recipe.cfg.eval
    file = encoder_file(run_dir, checkpoint)
    blob, _ = read_any(file)
    pretrained = encoder_from_blob(blob, file, device=str(dev))
    inits = []
    for k in range(cfg.init_seeds):
        seed_everything(recipe.cfg.train.seed + 1 + k)
        inits.append(build_backbone(recipe, blob["meta"]))
    splits = None
    if data_path is None:
        splits = load_splits(recipe)
        train_set, test_set = (splits.train, splits.val) if cfg.split == "val" else \
            (splits.train, splits.test)
    else:
        dataset = recipe.plugin.load_file(recipe.cfg.data, data_path,
                                          data_root(recipe.cfg.data_root), blob["meta"])
        y = dataset_labels(dataset)
        train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                               random_state=cfg.seed,
                                               stratify=None if is_regression(y) else y)
        train_set, test_set = DataSplit(dataset, train_idx), DataSplit(dataset, test_idx)
    encoders = {"pretrained": [pretrained], "random_init": inits}
    own = kept_encoder_path(run_dir, 0)
    if own.is_file() and checkpoint != 0:  # the network this run started from
        blob0, _ = read_any(own)
        encoders[OWN_INIT] = [encoder_from_blob(blob0, own, device=str(dev))]
    total = sum(len(v) for v in encoders.values())
    features: LE.Features = {}
    y_train = y_test = np.zeros(0, dtype=np.int64)  # set by the first _features call below
    baselines = recipe.plugin.baselines
    bar = tqdm(total=2 * total + 1 + len(baselines), desc="eval: embed", unit="set",
               disable=not progress, dynamic_ncols=True)
    for name, backbones in encoders.items():
        features[name] = []
        for backbone in backbones:
            x_tr, y_train = _features(backbone, train_set, cfg, dev)
            bar.update(1)
            x_te, y_test = _features(backbone, test_set, cfg, dev)
            bar.update(1)
            features[name].append((x_tr, x_te))
    raw_train, raw_test = raw_features(recipe, train_set, test_set)
    features["raw_features"] = [(raw_train, raw_test)]
    bar.update(1)
    fitted = baseline_features(baselines, train_set, test_set, cfg.seed)
    features.update(fitted)
    bar.update(len(baselines))
    bar.close()
    y_all = np.concatenate([y_train, y_test])
    if len(known_rows(y_all)) < len(y_all):
        raise DataError(f"{recipe.source}: evaluation needs labels, and some samples have none")
    plain = [p for p in protocols if p != "label_efficiency"]
    targets = {}  # extra targets, read once: `{name: (train [N], test [M])}`
    train_targets = train_set.probe_targets() if isinstance(train_set, HasProbeTargets) else {}
    if data_path is None and train_targets:
        test_targets = test_set.probe_targets()
        targets = {k: (v, test_targets[k]) for k, v in train_targets.items()}
    scores: dict = {}
    if "label_efficiency" in protocols:
        keep = subsample_indices(len(y_train), cfg.max_train, cfg.seed)
        jobs = {"label": (y_train, y_test)}
        jobs.update(targets)
        for key, (y_tr, y_te) in jobs.items():
            _say(progress, f"eval: label_efficiency ({key}, {cfg.draws} draws per budget)")
            (tr, y_tr), (te, y_te) = known(np.asarray(y_tr)[keep]), known(y_te)
            pool = {k: [(x_tr[keep][tr], x_te[te]) for x_tr, x_te in v]
                    for k, v in features.items()}
            classes = is_class_target(y_tr)
            rows = LE.label_efficiency(pool, y_tr, y_te, cfg.shots, cfg.fractions, cfg.draws,
                                       cfg.seed, classes)
            scores[key] = (rows, "accuracy" if classes else "r2", y_te)
    result: dict = {}
    if plain:
        _say(progress, f"eval: {', '.join(plain)}")
        linear = (all_labels_probe(scores["label"][0])
                  if "label" in scores and not is_regression(y_train) else None)
        result = run_protocols(features, y_train, y_test, cfg, len(np.unique(y_all)), plain,
                               linear)
    if targets:
        result["targets"] = target_probes(features, {k: v[0] for k, v in targets.items()},
                                          {k: v[1] for k, v in targets.items()})
    if scores:
        result["label_efficiency"] = summarize_efficiency(
            {k: (rows, metric) for k, (rows, metric, _) in scores.items()}, cfg.draws,
            cfg.init_seeds, [*fitted, *([OWN_INIT] if OWN_INIT in features else [])])
    if fitted:
        result["baselines"] = list(fitted)
    if OWN_INIT in features:
        result[OWN_INIT] = str(own)
    result["n_train"] = int(len(y_train))
    result["n_test"] = int(len(y_test))
    if cfg.split == "val":
        result["split"] = "val"
    return result, scores, splits


def all_labels_probe(rows: list[LE.BudgetScores]) -> dict[str, list[float]] | None:
    """The linear probe's accuracy per encoder and initialisation, read from the budget of every
    label (`eval.fractions` holding 1.0: the same logistic regression on the same rows), or None
    when that budget was not measured."""
    for row in rows:
        if row.budget == LE.Budget("fraction", 1.0):
            each = {k: [float(v[0])] for k, v in row.draws.items()}
            if row.init_means:
                each["random_init"] = list(row.init_means)
            return each
    return None


def summarize_efficiency(scores: dict[str, tuple[list[LE.BudgetScores], str]], draws: int,
                         init_seeds: int, baselines: Sequence[str] = ()) -> dict:
    """The JSON `label_efficiency` entry from `{target: (budget scores, metric)}`: the class
    labels' budgets (`label`) at the top, each extra target's under `targets`; each budget
    compares pretrained with random init and with each of `baselines` (`LE.summarize`)."""
    def section(rows: list[LE.BudgetScores], metric: str) -> dict:
        return {"metric": metric, "budgets": [within_range(LE.summarize(r, versus=baselines),
                                                           metric) for r in rows]}

    rows, metric = scores["label"]
    out = {"probe": "logistic regression (ridge regression for real-valued targets)",
           "confidence": LE.CONFIDENCE, "draws": draws, "init_seeds": init_seeds,
           "intervals": "clipped to the metric's range: accuracy in [0, 1] (differences in "
                        "[-1, 1]), R² at most 1",
           **section(rows, metric)}
    extra = {k: section(*v) for k, v in scores.items() if k != "label"}
    if extra:
        out["targets"] = extra
    return out


def within_range(row: dict, metric: str) -> dict:
    """A budget's summary with every interval clipped to what `metric` can take (a t-interval
    over few draws near 1.0 would otherwise reach past it): accuracy means in [0, 1] and their
    differences in [-1, 1]; R² at most 1 (differences of R² unbounded). Verdicts are unchanged:
    clipping never moves an interval across 0."""
    low, high = (0.0, 1.0) if metric == "accuracy" else (-math.inf, 1.0)
    for key, value in row.items():  # each encoder's mean and interval
        if key != "difference" and isinstance(value, dict) and {"mean", "low", "high"} <= value.keys():
            value["low"], value["high"] = max(value["low"], low), min(value["high"], high)
    differences = [row.get("difference"), *(v.get("difference") for v in
                                            row.get("versus", {}).values())]
    if metric == "accuracy":
        for d in differences:
            if d is not None:
                d["low"], d["high"] = max(d["low"], -1.0), min(d["high"], 1.0)
    return row


def evaluate_runs(run_dirs: list[str | Path], data_path: str | None = None, device: str = "auto",
                  test_fraction: float = 0.2, overrides: Sequence[str] = (),
                  checkpoint: int | None = None, progress: bool = False) -> dict:
    """`evaluate_run` on several runs (e.g. pretraining seeds of one recipe), and across them.

    Returns:
        `{"runs": {run_dir: result}, "across_runs": tree, "label_efficiency": pooled}`: `tree`
        mirrors a run's result with `{"mean", "std"}` (over runs) at every number; `pooled`
        (when every run was scored on the same labels) is the label-efficiency summary of the
        runs' scores averaged draw by draw, so its paired interval and verdict are those of the
        seed-averaged encoder against the seed-averaged random init, on the shared draws.
    """
    results, scores = {}, []
    for run_dir in run_dirs:
        _say(progress, f"eval: run {run_dir}")
        result, run_scores = _evaluate(Path(run_dir), data_path, device, test_fraction,
                                       list(overrides), checkpoint, progress)
        results[str(run_dir)] = result
        scores.append(run_scores)
    out: dict = {"runs": results, "across_runs": across_runs(list(results.values()))}
    if scores and scores[0]:
        shared = all(set(s) == set(scores[0]) and all(
            np.array_equal(s[k][2], scores[0][k][2]) for k in s) for s in scores)
        if shared:
            pooled = {k: ([LE.pool_runs([s[k][0][i] for s in scores])
                           for i in range(len(rows))], metric)
                          for k, (rows, metric, _) in scores[0].items()}
            first = next(iter(results.values()))
            own = [OWN_INIT] if all(OWN_INIT in r for r in results.values()) else []
            out["label_efficiency"] = {**summarize_efficiency(
                pooled, first["label_efficiency"]["draws"], first["label_efficiency"]["init_seeds"],
                [*first.get("baselines", []), *own]), "runs": len(scores)}
        else:
            out["label_efficiency"] = {"note": "not pooled: the runs were scored on different "
                                               "labels (another split or data)"}
    return out


def across_runs(results: list[dict]) -> dict:
    """Mean and std over runs of every number in their results (same structure), as
    `{"mean": m, "std": s}` leaves; strings that agree are kept, others listed."""
    def merge(values: list) -> Any:
        first = values[0]
        if isinstance(first, bool) or first is None:
            return first if all(v == first for v in values) else list(values)
        if isinstance(first, int | float):
            return {"mean": float(np.mean(values)), "std": float(np.std(values))}
        if isinstance(first, dict):
            keys = [k for k in first if all(isinstance(v, dict) and k in v for v in values)]
            return {k: merge([v[k] for v in values]) for k in keys}
        if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first)
                                           for v in values):
            return [merge([v[i] for v in values]) for i in range(len(first))]
        return first if all(v == first for v in values) else list(values)

    return merge(results) if results else {}


def format_table(result: dict) -> str:
    """A plain-text table of an `evaluate_run` result."""
    scalar = [p for p in SCALARS if p in result]
    names = encoder_names(result)
    width = _name_width(names)
    lines = []
    if scalar:
        lines.append(f"{metric_name(result):<{width}}" + "".join(f"{p:>18}" for p in scalar))
        for name in names:
            lines.append(f"{name:<{width}}" + "".join(f"{result[p][name]:>18.4f}" for p in scalar))
        each = result.get("random_init_each", {})
        if each:
            lines.append(f"(random_init: mean of {len(next(iter(each.values())))} initialisations; "
                         + ", ".join(f"{p} {min(v):.4f}-{max(v):.4f}" for p, v in each.items())
                         + ")")
    for name, row in result.get("targets", {}).items():
        lines.append(f"target {name} ({row['metric']}): " + ", ".join(
            f"{encoder} {row[encoder]:.4f}" for encoder in names))
    for episode, scores in result.get("few_shot", {}).items():
        lines.append(f"few-shot {episode}: " + ", ".join(
            f"{name} {s['mean']:.4f} ± {s['std']:.4f}" for name, s in scores.items()))
    if "label_efficiency" in result:
        lines += format_efficiency(result["label_efficiency"])
    for name, value in result.items():
        if isinstance(value, dict) and "table" in value:
            lines += [f"{name}:", *_rows(value["table"])]
    split = " on the validation split" if result.get("split") == "val" else ""
    lines.append(f"(n_train={result['n_train']}, n_test={result['n_test']}{split})")
    if "selection" in result:
        lines.append(f"({result['selection']['verdict']})")
    reading = comparison(result)
    if reading:
        lines.append(reading)
    return "\n".join(lines)


def report_name(checkpoint: int | None = None, split: str = "test", several: bool = False,
                other_data: bool = False) -> str:
    """The stem of a saved evaluation: `eval`, `eval_step300`, `eval_val`, `eval_runs`,
    `eval_data` (on `--data`), ... so that evaluations of different things do not overwrite
    each other."""
    return ("eval" + ("_runs" if several else "") + ("_data" if other_data else "")
            + (f"_step{checkpoint}" if checkpoint is not None else "")
            + ("_val" if split == "val" else ""))


def save_report(directory: Path, name: str, result: dict, text: str, command: list[str]
                ) -> list[Path]:
    """Write `directory/name.json` (the result, and the command that produced it) and
    `directory/name.txt` (the table), each whole or not at all."""
    json_path, text_path = directory / f"{name}.json", directory / f"{name}.txt"
    write_atomic(json_path, json.dumps({"command": command, **result}, indent=1).encode())
    write_atomic(text_path, (text + "\n").encode())
    return [json_path, text_path]


def comparison(result: dict) -> str:
    """One line reading a result: pretrained minus each baseline on each accuracy probe, in
    percentage points (means over runs when the values are `{"mean", "std"}`), and the verdicts
    at 5 labels per class (against random init, then each modality baseline) where label
    efficiency measured them."""
    def value(v: Any) -> float:
        return v["mean"] if isinstance(v, dict) else v

    scalar = [p for p in ("linear_probe", "knn", "svm") if p in result]  # higher is better
    parts = []
    for baseline in encoder_names(result)[1:]:
        diffs = [f"{p} {100 * (value(result[p]['pretrained']) - value(result[p][baseline])):+.1f}"
                 for p in scalar]
        if diffs:
            parts.append(f"vs {baseline.replace('_', ' ')}: " + ", ".join(diffs))
    line = "pretrained " + "; ".join(parts) + f" points of {metric_name(result)}" if parts else ""
    five = [b for b in result.get("label_efficiency", {}).get("budgets", [])
            if b["budget"] == "5_per_class"]
    if five:
        line += ("; " if line else "") + (f"with 5 labels per class: {five[0]['verdict']} "
                                          f"({_signed_ci(five[0]['difference'])})")
        line += "".join(f", vs {name}: {paired['verdict']} ({_signed_ci(paired['difference'])})"
                        for name, paired in five[0].get("versus", {}).items())
    return line


def format_efficiency(summary: dict, title: str = "label efficiency") -> list[str]:
    """The label-efficiency tables (class labels, then each extra target) as text lines."""
    if "budgets" not in summary:
        return [f"{title}: {summary.get('note', '')}"]
    sections = [("labels", summary), *summary.get("targets", {}).items()]
    lines = []
    for target, section in sections:
        lines.append(
            f"{title}, {target} ({section['metric']}, {summary['probe']}; mean [95% interval] "
            f"over {summary['draws']} draws, or over test examples for a single draw; random_init: "
            f"mean of {summary['init_seeds']} initialisations (their range)):")
        rows = []
        for b in section["budgets"]:
            rnd, versus = b["random_init"], b.get("versus", {})
            span = f" ({rnd['init_min']:.3f}-{rnd['init_max']:.3f})" if "init_min" in rnd else ""
            rows.append({
                "budget": b["budget"], "labels": f"{b['n_labels']:.0f}" + ("*" if b["capped"] else ""),
                "pretrained": _ci(b["pretrained"]), "random_init": _ci(rnd) + span,
                "raw_features": _ci(b["raw_features"]),
                **{name: _ci(b[name]) for name in versus},
                "pretrained - random_init": _signed_ci(b["difference"]),
                "verdict": b["verdict"]})
            for name, paired in versus.items():
                rows[-1].update({f"pretrained - {name}": _signed_ci(paired["difference"]),
                                 f"verdict vs {name}": paired["verdict"]})
        lines += _rows(rows)
        if any(b["capped"] for b in section["budgets"]):
            lines.append("(* some classes have fewer training examples than the budget: all of "
                         "theirs are used)")
    return lines


def _name_width(names: list[str]) -> int:
    """The width of a table's first column: 14, or more for a longer encoder name."""
    return max(14, *(len(name) + 2 for name in names))


def _ci(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def _signed_ci(s: dict) -> str:
    """A difference with its interval, signs shown: `+0.034 [+0.020, +0.047]`."""
    return f"{s['mean']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}]"


def format_runs(out: dict) -> str:
    """A plain-text report of `evaluate_runs`: each run, then mean ± std across runs and the
    pooled label-efficiency verdicts."""
    lines = []
    for run, result in out["runs"].items():
        lines += [f"== {run}", format_table(result), ""]
    agg, n = out["across_runs"], len(out["runs"])
    lines.append(f"== mean ± std over {n} runs")
    scalar = [p for p in SCALARS if p in agg]
    names = encoder_names(agg)
    width = _name_width(names)
    if scalar:
        lines.append(f"{metric_name(agg):<{width}}" + "".join(f"{p:>18}" for p in scalar))
        for name in names:
            lines.append(f"{name:<{width}}" + "".join(
                f"{agg[p][name]['mean']:>11.4f} ± {agg[p][name]['std']:.3f}" for p in scalar))
    for name, row in agg.get("targets", {}).items():
        lines.append(f"target {name}: " + ", ".join(
            f"{e} {row[e]['mean']:.4f} ± {row[e]['std']:.4f}" for e in names))
    if "label_efficiency" in out:
        lines += format_efficiency(out["label_efficiency"],
                                   f"label efficiency pooled over {n} runs")
    reading = comparison({**agg, "label_efficiency": out.get("label_efficiency", {})})
    if reading:
        lines.append(f"mean over {n} runs: {reading}")
    return "\n".join(lines)


def _rows(rows: list[dict]) -> list[str]:
    """Rows of dicts as aligned text lines, a header first."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()] for row in rows]
    header = list(rows[0])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    return ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))] + [
        "  ".join(c.rjust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
