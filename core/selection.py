"""Checkpoint selection (`train.select`): which of a run's encoders becomes `encoder.pt`.

Pretraining can make an encoder worse than the random network it started from, on data nobody
tuned for. With `val_probe` or `rankme` the trainer scores the exported encoder at step 0 (the
random initialisation), at every online probe and at the last step, keeps the best, and says
plainly when step 0 won.

* `val_probe`: the online probe's `probe/few_shot` (the label-efficiency probe fitted on a few
  training labels per class, `train.probe_shots`, of frozen embeddings, averaged over draws and
  scored on the validation split); needs labels. A few labels, not all: the all-label probe
  saturates on small validation splits (every candidate at 1.0) and, on the development sets of
  `data_cards/unseen.md`, rose while the few-label accuracy fell (FSDD digits, `my_audio`).
* `rankme`: RankMe (Garrido et al. 2023, arXiv:2210.02885), the effective rank of the training
  samples' embeddings; label-free, so it works on unlabelled data, and is what `val_probe` falls
  back to when the validation split is too small to decide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from polyjepa.targets import is_regression, known_rows

MIN_PER_CLASS = 3
"""`val_probe` needs at least this many labelled validation samples of every training class."""
MIN_REGRESSION = 10
"""... or, for a regression target, at least this many validation targets."""

SCORE_KEYS = {"val_probe": "probe/few_shot", "rankme": "probe/rankme"}
"""The online-probe metric each selection rule maximises."""
TIE_BREAKS = {"val_probe": "probe/linear_mse"}
"""What decides between equal scores (lower wins): the all-label ridge probe's squared error,
since accuracy on a small validation split often ties."""


def selection_rule(select: str, val_labels: np.ndarray | None) -> tuple[str, str | None]:
    """The rule a run selects by, and why it differs from `select` (None when it does not).

    `val_probe` becomes `rankme` when the validation split lacks labels or holds fewer than
    `MIN_PER_CLASS` samples of some class it has (`MIN_REGRESSION` targets for regression)."""
    if select != "val_probe":
        return select, None
    labels = np.asarray([] if val_labels is None else val_labels)
    labels = labels[known_rows(labels)]
    if len(labels) == 0:
        return "rankme", "the validation split has no labels"
    if is_regression(labels):
        if len(labels) < MIN_REGRESSION:
            return "rankme", (f"the validation split is too small to decide ({len(labels)} "
                              f"targets; val_probe needs {MIN_REGRESSION})")
        return "val_probe", None
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < MIN_PER_CLASS:
        return "rankme", (f"the validation split is too small to decide ({len(labels)} labelled "
                          f"samples, {counts.min()} in its smallest of {len(classes)} classes; "
                          f"val_probe needs {MIN_PER_CLASS} per class and 2 classes)")
    return "val_probe", None


def candidate_every(probe_every: int, steps: int, select: str) -> int:
    """The probe cadence: `train.probe_every`, made short enough for 4 candidates after step 0
    when a selection rule is on (a budget scaled down to the data may be shorter than it)."""
    if select == "last":
        return probe_every
    return max(1, min(probe_every, steps // 4))


@dataclass
class Selector:
    """The best-scoring candidate so far. A candidate must beat the best strictly, on its score
    and then its tie-break (`TIE_BREAKS`): a full tie keeps the earlier step (the random
    initialisation wins a full tie with a trained encoder)."""

    by: str  # the rule: val_probe | rankme
    fallback: str | None = None  # why `by` differs from the recipe's train.select
    candidates: list[tuple[int, float, float]] = field(default_factory=list)  # (step, score, tie)
    best_step: int | None = None
    best_score: float = -np.inf
    best_tie: float = np.inf  # the best's tie-break value (lower wins)

    @property
    def metric(self) -> str:
        return SCORE_KEYS[self.by]

    def offer(self, step: int, row: dict[str, float]) -> bool:
        """Record the probe `row` of `step`; True when it is the new best."""
        score = row.get(self.metric)
        if score is None or not np.isfinite(score):
            return False
        tie = float(row.get(TIE_BREAKS.get(self.by, ""), np.inf))
        self.candidates.append((step, float(score), tie))
        if (score, -tie) > (self.best_score, -self.best_tie):
            self.best_step, self.best_score, self.best_tie = step, float(score), tie
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {**asdict(self), "candidates": [list(c) for c in self.candidates]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.by, self.fallback = state["by"], state["fallback"]
        self.candidates = [(int(s), float(v), float(t)) for s, v, t in state["candidates"]]
        self.best_step, self.best_score = state["best_step"], float(state["best_score"])
        self.best_tie = float(state["best_tie"])

    def summary(self) -> dict[str, Any]:
        """What `run.json` keeps under `selection`: the rule, the chosen step, every candidate's
        `[step, score, tie-break]`, step 0's score and the verdict in words."""
        at_zero = self._at(0)
        return {"by": self.by, "metric": self.metric, "tie_break": TIE_BREAKS.get(self.by),
                "fallback": self.fallback, "step": self.best_step,
                "score": self.best_score if self.candidates else None,
                "step0_score": None if at_zero is None else at_zero[1],
                "candidates": [list(c) for c in self.candidates], "verdict": self.verdict()}

    def _at(self, step: int) -> tuple[int, float, float] | None:
        return next((c for c in self.candidates if c[0] == step), None)

    def verdict(self) -> str:
        """One sentence: which encoder `encoder.pt` holds and whether pretraining beat the random
        network."""
        if self.best_step is None:
            return f"encoder.pt is the last step's: no candidate had a {self.metric} score"
        how = f"selected by {self.by} ({self.metric}"
        how += f"; {self.fallback})" if self.fallback else ")"
        at_zero = self._at(0)
        if self.best_step == 0:
            later = max((c for c in self.candidates if c[0] > 0), key=lambda c: (c[1], -c[2]),
                        default=None)
            beyond = f", best later {later[1]:.4g} at step {later[0]}" if later else ""
            where = ("on the validation split" if self.by == "val_probe"
                     else "in the effective rank of its embeddings")
            return (f"encoder.pt is the random initialisation (step 0), {how}: pretraining did "
                    f"not beat the random network {where} ({self.metric} {self.best_score:.4g} "
                    f"at step 0{beyond})")
        base = ""
        if at_zero is not None:
            base = f" against {at_zero[1]:.4g} at step 0"
            if at_zero[1] == self.best_score and self.by in TIE_BREAKS:
                base += (f" (a tie, broken by {TIE_BREAKS[self.by]}: {self.best_tie:.4g} against "
                         f"{at_zero[2]:.4g})")
        return (f"encoder.pt is step {self.best_step}'s encoder, {how}: {self.metric} "
                f"{self.best_score:.4g}{base}")
