"""What a VJ-VCR predictor's latent variable holds (issue 21), for runs of `predictive_vcr`.

For each run (its last checkpoint) on held-out clips (`--split val`, the default: the validation
split carved from the training clips, where settings are chosen; `--split test` for the
reported figures), with each clip's context latents `h_x [B, Nc, D]` and future latents
`h_y [B, Nt, D]` from the run's own encoder:

- `error_best`: the representation-space prediction error with the best latent of each clip
  (continuous z: `infer_latent`, FISTA; K heads: the closest head; none: the one prediction),
  as a share of the future latents' variance (1.0 = no better than predicting their mean);
- `error_prior`: the same with the latent unknown (continuous z: the prior z = 0; K heads: the
  mean of the heads' predictions);
- `leak_r2`: ridge R² from the latent alone (z*, or the chosen head one-hot) to `h_y`, fitted on
  half the clips and scored on the other half: how much of the target the latent can
  reconstruct (a latent that copies the target scores near 1); `context_r2` is the same from the
  context latents, what the past alone determines;
- `turn_latent` (clips with a direction change, `data.moving_mnist.turn_at`): logistic-regression
  accuracy from the context latents and the latent to the turn taken (the turn is relative to the
  motion the context shows), beside `turn_context` from the context alone (the turn comes after
  it: chance, one over the number of turn angles) and `turn_future` from the context and the
  future latents (what the latent could hold at best);
- `nonzero`: the share of active coordinates of a continuous z.

Prints `name=value` lines per run (prefixed by the run's folder name) and a table.

    python benchmarks/latent_study.py runs/mm_sparse/seed0 runs/mm_heads/seed0 --split test
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from torch.utils.data import DataLoader, Subset

from polyjepa.build import build_masker, load_splits, recipe_from_dict
from polyjepa.checkpoint import load_file
from polyjepa.contracts import HasProbeTargets
from polyjepa.encoders import gather_tokens
from polyjepa.hub import load_objective
from polyjepa.objectives import PredictiveVCR
from polyjepa.train import CHECKPOINT


def half_split_score(x: np.ndarray, y: np.ndarray, classify: bool, seed: int = 0) -> float:
    """Fit on a random half, score on the other (ridge R², or logistic accuracy)."""
    order = np.random.default_rng(seed).permutation(len(x))
    fit, score = order[: len(x) // 2], order[len(x) // 2:]
    if classify:
        model = LogisticRegression(max_iter=2000).fit(x[fit], y[fit])
        return float(model.score(x[score], y[score]))
    model = Ridge(alpha=1.0).fit(x[fit], y[fit])
    return float(r2_score(y[score], model.predict(x[score]), multioutput="variance_weighted"))


@torch.no_grad()
def latents_of(objective: PredictiveVCR, masker, dataset, batch_size: int = 100
               ) -> dict[str, np.ndarray]:
    """Per clip: context and future latents, the best and prior predictions, and the latent."""
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("context", "target", "best", "prior", "z")}
    generator = torch.Generator().manual_seed(0)
    for x, _ in DataLoader(dataset, batch_size=batch_size):
        masks = masker(len(x), generator)
        h = objective.online(x)[:, objective.online.num_prefix_tokens:]
        context = gather_tokens(h, masks.context)  # [B, Nc, D]
        target = gather_tokens(h, masks.target[:, 0])  # [B, Nt, D]
        if objective.latent_dim:
            z = objective.infer_latent(context, target)  # [B, Z]
            best = objective.predictor(context, z)[:, 0]
            prior = objective.predictor(context)[:, 0]
        else:
            heads = objective.predictor(context)  # [B, K, Nt, D]
            choice = (heads - target.unsqueeze(1)).square().flatten(2).mean(-1).argmin(1)
            best = heads[torch.arange(len(x)), choice]
            prior = heads.mean(1)
            z = torch.nn.functional.one_hot(choice, heads.shape[1]).float()
        for key, value in (("context", context), ("target", target), ("best", best),
                           ("prior", prior), ("z", z)):
            rows[key].append(value.flatten(1).float().numpy())
    return {k: np.concatenate(v) for k, v in rows.items()}


def study(run_dir: Path, clips: int, split: str) -> dict[str, float]:
    state = load_file(run_dir / CHECKPOINT)
    recipe = recipe_from_dict(state["config"], str(run_dir))
    objective = load_objective(run_dir)
    if not isinstance(objective, PredictiveVCR):
        raise SystemExit(f"{run_dir}: objective is not predictive_vcr")
    splits = load_splits(recipe)
    dataset = splits.val if split == "val" else splits.test
    if dataset is None:
        raise SystemExit(f"{run_dir}: the recipe has no validation split (data.val_fraction); "
                         "pass --split test")
    dataset = Subset(dataset, range(min(clips, len(dataset))))
    masker = build_masker(recipe, state["meta"], objective.online.layout)
    out = latents_of(objective, masker, dataset)
    variance = out["target"].var(0).sum()
    result = {
        "error_best": float(((out["best"] - out["target"]) ** 2).sum(1).mean() / variance),
        "error_prior": float(((out["prior"] - out["target"]) ** 2).sum(1).mean() / variance),
        "context_r2": half_split_score(out["context"], out["target"], classify=False),
    }
    latent_varies = out["z"].std(0).max() > 0
    result["leak_r2"] = (half_split_score(out["z"], out["target"], classify=False)
                         if latent_varies else 0.0)
    if objective.latent_dim:
        result["nonzero"] = float((out["z"] != 0).mean())
    parent = dataset.dataset
    targets = parent.probe_targets() if isinstance(parent, HasProbeTargets) else {}
    if "turn" in targets and latent_varies:
        turn = np.asarray(targets["turn"])[:len(out["z"])]
        for name, parts in (("turn_context", ["context"]), ("turn_latent", ["context", "z"]),
                            ("turn_future", ["context", "target"])):
            features = np.concatenate([out[k] for k in parts], axis=1)
            result[name] = half_split_score(features, turn, classify=True)
    return result


def label(run: Path) -> str:
    """A run's name in the output: its folder and the folder above (`sparse/seed0`)."""
    full = run.resolve()
    return f"{full.parent.name}/{full.name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--clips", type=int, default=1000, help="held-out clips per run (at most)")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    results = {}
    for run in args.runs:
        results[run] = study(run, args.clips, args.split)
        for key, value in results[run].items():
            print(f"{label(run)}.{key}={value:.4f}", flush=True)
    keys = ["error_best", "error_prior", "context_r2", "leak_r2", "turn_context", "turn_latent",
            "turn_future", "nonzero"]
    print("| run | " + " | ".join(keys) + " |")
    for run, result in results.items():
        cells = [f"{result[k]:.3f}" if k in result else "-" for k in keys]
        print(f"| {label(run)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
