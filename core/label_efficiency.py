"""Label efficiency: what a frozen encoder is worth when only a few labels are known.

For each labelled budget — `k` examples per class (`eval.shots`) or a share of the training
labels (`eval.fractions`) — `eval.draws` seeded subsets of the training split are drawn once and
used for every encoder (pretrained, each random initialisation, raw features, the modality's
label-free baselines), so the comparison is **paired**: a probe fitted on the same labelled
examples, scored on the same test split. The probe is logistic regression on standardised
features (accuracy) for class labels, ridge regression (R², alpha by cross-validation when the
subset allows) for real-valued targets.

Intervals (95 %):
- over draws, a Student-t interval of the per-draw scores (and of the per-draw paired difference
  pretrained − random init, where random init is the mean over its initialisations on that draw,
  and pretrained − each label-free baseline of the modality, e.g. time series' MiniRocket);
- where a budget has a single distinct draw (every label, or `k` at least every class's size),
  a normal interval over test examples of the per-example score difference (accuracy: correct or
  not; R²: each example's share of 1 − SSE/SST), the paired test of two classifiers on one test set.

A verdict per budget reads the paired interval: `helps` when it lies above 0, `hurts` below 0,
`no difference` when it contains 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from polyjepa.errors import ConfigError

CONFIDENCE = 0.95
VERDICTS = ("helps", "no difference", "hurts")
Features = dict[str, list[tuple[np.ndarray, np.ndarray]]]
"""Encoder name -> one `(x_train [N, F], x_test [M, F])` pair per initialisation (random init
has several; pretrained and raw features one)."""


ALPHAS = np.logspace(-2, 4, 7)
"""Ridge regression's penalties, chosen by cross-validation on the training rows."""


@dataclass(frozen=True)
class Budget:
    """A labelled budget: `kind` "shots" (`value` labels per class) or "fraction" (`value` of
    the training labels)."""

    kind: str
    value: float

    @property
    def name(self) -> str:
        return f"{int(self.value)}_per_class" if self.kind == "shots" else f"{self.value:g}_of_labels"


def budgets(shots: list[int], fractions: list[float], classify: bool = True) -> list[Budget]:
    """The budgets to measure; shot budgets only for class labels.

    Raises:
        ConfigError: a shot count below 1 or a fraction outside (0, 1].
    """
    for k in shots:
        if k < 1:
            raise ConfigError(f"eval.shots: each value must be >= 1, got {k}")
    for p in fractions:
        if not 0 < p <= 1:
            raise ConfigError(f"eval.fractions: each value must lie in (0, 1], got {p}")
    out = [Budget("shots", k) for k in sorted(set(shots))] if classify else []
    return out + [Budget("fraction", p) for p in sorted(set(fractions))]


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Per-class sample counts summing to `total`, proportional to `counts` (largest remainder)."""
    exact = counts * total / counts.sum()
    take = np.floor(exact).astype(int)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: total - take.sum()]] += 1
    return np.minimum(take, counts)


def draw_subset(y: np.ndarray, budget: Budget, seed: int, draw: int, classify: bool = True
                ) -> np.ndarray:
    """Sorted indices into `y` of one labelled subset.

    Shots: `min(k, class size)` examples of every class (a class smaller than `k` gives all it
    has). Fraction: `round(p * N)` examples (at least 1), stratified by class when `classify`
    (largest-remainder allocation, so a class may be absent from a small draw), uniform otherwise.
    The subset depends only on `(y, budget, seed, draw)`: every encoder gets the same one.
    """
    rng = np.random.default_rng([seed, 0 if budget.kind == "shots" else 1,
                                 int(round(budget.value * 1_000_000)), draw])
    n = len(y)
    if budget.kind == "shots":
        parts = [rng.choice(np.flatnonzero(y == c), min(int(budget.value), int((y == c).sum())),
                            replace=False) for c in np.unique(y)]
        return np.sort(np.concatenate(parts))
    total = max(1, int(round(budget.value * n)))
    if not classify:
        return np.sort(rng.choice(n, total, replace=False))
    classes, counts = np.unique(y, return_counts=True)
    take = _allocate(counts, total)
    parts = [rng.choice(np.flatnonzero(y == c), k, replace=False)
             for c, k in zip(classes, take, strict=True) if k]
    return np.sort(np.concatenate(parts))


def example_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                   y_test: np.ndarray, classify: bool, seed: int = 0) -> np.ndarray:
    """Per-test-example scores `[M]` of a probe fitted on `(x_train, y_train)`, whose mean is the
    probe's score: 1/0 correct for classification (a subset holding one class predicts it), each
    example's share of R² (1 − its squared error over the test variance, averaged over outputs)
    for regression."""
    if classify:
        if len(np.unique(y_train)) < 2:
            return (y_test == y_train[0]).astype(np.float64)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        return (model.fit(x_train, y_train).predict(x_test) == y_test).astype(np.float64)
    y_train = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    y_test = np.asarray(y_test, dtype=np.float64).reshape(len(y_test), -1)
    ridge = RidgeCV(alphas=ALPHAS) if len(y_train) >= 3 else Ridge(alpha=1.0)
    model = make_pipeline(StandardScaler(), ridge)
    error = (model.fit(x_train, y_train).predict(x_test).reshape(y_test.shape) - y_test) ** 2
    variance = np.maximum(y_test.var(axis=0), 1e-12)
    return 1.0 - (error / variance).mean(axis=1)


@dataclass
class BudgetScores:
    """One budget's raw scores, enough to summarise it and to pool several runs.

    Attributes:
        budget: the budget.
        n_labels: labelled examples per draw (mean over draws).
        capped: some class had fewer examples than a shot budget asked for.
        draws: per encoder, `[D]` scores of each draw (random init: mean over initialisations).
        init_means: random init's score averaged over draws, one per initialisation.
        examples: per encoder, `[M]` per-example scores when the budget has one distinct draw.
    """

    budget: Budget
    n_labels: float
    capped: bool
    draws: dict[str, np.ndarray]
    init_means: list[float]
    examples: dict[str, np.ndarray] = field(default_factory=dict)


def measure(features: Features, y_train: np.ndarray, y_test: np.ndarray, budget: Budget,
            draws: int, seed: int, classify: bool) -> BudgetScores:
    """Score every encoder of `features` on the same `draws` subsets of one budget."""
    subsets = [draw_subset(y_train, budget, seed, d, classify) for d in range(draws)]
    single = all(np.array_equal(s, subsets[0]) for s in subsets)
    if single:
        subsets = subsets[:1]
    per_draw: dict[str, np.ndarray] = {}
    examples: dict[str, np.ndarray] = {}
    init_means: list[float] = []
    for name, pairs in features.items():
        scores = np.stack([  # [inits, draws, M]
            np.stack([example_scores(x_tr[s], y_train[s], x_te, y_test, classify, seed)
                      for s in subsets]) for x_tr, x_te in pairs])
        per_draw[name] = scores.mean(axis=(0, 2))
        if single:
            examples[name] = scores[:, 0].mean(axis=0)
        if len(pairs) > 1:
            init_means = [float(v) for v in scores.mean(axis=(1, 2))]
    capped = budget.kind == "shots" and any(
        (y_train == c).sum() < budget.value for c in np.unique(y_train))
    return BudgetScores(budget, float(np.mean([len(s) for s in subsets])), capped, per_draw,
                        init_means, examples)


def interval(values: np.ndarray, confidence: float = CONFIDENCE, over: str = "draws"
             ) -> tuple[float, float, float]:
    """`(mean, low, high)`: Student-t over draws, normal over test examples; a single value (or
    no spread) gives a zero-width interval."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    sem = float(values.std(ddof=1) / np.sqrt(len(values)))
    q = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) if over == "draws" else \
        stats.norm.ppf(0.5 + confidence / 2)
    return mean, mean - q * sem, mean + q * sem


TIE = 1e-9
"""Differences within this of 0 are rounding, not effects (two encoders that are the same
network score the same up to float noise)."""


def verdict(low: float, high: float) -> str:
    """`helps` (interval above 0), `hurts` (below 0) or `no difference`."""
    return "helps" if low > TIE else "hurts" if high < -TIE else "no difference"


def summarize(scores: BudgetScores, baseline: str = "random_init",
              versus: Sequence[str] = ()) -> dict:
    """JSON-ready summary of one budget: each encoder's mean and interval, random init's range
    over initialisations, the paired difference pretrained − `baseline` and its verdict
    (`difference`, `verdict`), and under `versus` the same against each encoder it names (a
    modality's label-free baselines: `{name: {"difference", "verdict"}}`)."""
    over = "test_examples" if scores.examples else "draws"
    source = scores.examples or scores.draws
    row: dict = {"budget": scores.budget.name, "kind": scores.budget.kind,
                 "value": scores.budget.value, "n_labels": scores.n_labels,
                 "draws": len(next(iter(scores.draws.values()))), "capped": scores.capped}
    for name, values in scores.draws.items():
        mean, low, high = interval(source[name], over=over)
        row[name] = {"mean": float(values.mean()), "low": low, "high": high}
    if scores.init_means:
        row[baseline].update(init_min=min(scores.init_means), init_max=max(scores.init_means))
    if "pretrained" in source and baseline in source:
        row.update(paired(source["pretrained"], source[baseline], over))
    if versus:
        row["versus"] = {name: paired(source["pretrained"], source[name], over) for name in versus}
    return row


def paired(scores: np.ndarray, baseline: np.ndarray, over: str) -> dict:
    """`{"difference": {mean, low, high, over}, "verdict"}` of the paired difference `scores −
    baseline` (per draw or per test example, as `over` says)."""
    mean, low, high = interval(scores - baseline, over=over)
    return {"difference": {"mean": mean, "low": low, "high": high, "over": over},
            "verdict": verdict(low, high)}


def pool_runs(runs: list[BudgetScores]) -> BudgetScores:
    """Several pretraining runs' scores on the same draws and test split, averaged element-wise
    (so the pooled verdict reads the seed-averaged encoder against the seed-averaged baseline)."""
    first = runs[0]

    def mean(key: str, attr: str) -> np.ndarray:
        return np.mean([getattr(r, attr)[key] for r in runs], axis=0)

    def common(attr: str) -> list[str]:  # encoders every run has (e.g. a run's own step 0)
        return [k for k in getattr(first, attr) if all(k in getattr(r, attr) for r in runs)]

    return BudgetScores(
        first.budget, first.n_labels, first.capped,
        {k: mean(k, "draws") for k in common("draws")},
        [float(v) for v in np.mean([r.init_means for r in runs], axis=0)] if first.init_means else [],
        {k: mean(k, "examples") for k in common("examples")})


def label_efficiency(features: Features, y_train: np.ndarray, y_test: np.ndarray,
                     shots: list[int], fractions: list[float], draws: int, seed: int,
                     classify: bool = True) -> list[BudgetScores]:
    """Every budget of `shots` and `fractions` (shots only when `classify`) for every encoder."""
    if draws < 1:
        raise ConfigError(f"eval.draws must be >= 1, got {draws}")
    return [measure(features, y_train, y_test, b, draws, seed, classify)
            for b in budgets(shots, fractions, classify)]
