"""The `forecast` protocol: latent forecasting with a TS-JEPA run against naive and linear
autoregressive forecasts on the same series, by horizon.

For every series whose whole patches number at least `H + 1` (H = the run's rollout horizon),
the last `H` whole patches are the future and everything before them the context. TS-JEPA's
forecast: the encoder embeds the context (only it: the rest is padding to the encoder), the
predictor rolls the last context step's embedding forward `H` steps (with the actions of those
steps, when the series has actions), and a linear decoder maps each predicted embedding to its
patch's values: ridge regression fitted on the training series, from both the target encoder's
embeddings of every step and the training contexts' rollouts (so that it reads predicted
embeddings, which drift off the encoder's, as they come) to the patches' values.

Baselines, fitted on the training series' contexts and futures: `naive` (the last observed
value, held), `linear_ar` (ridge regression from the last `L` steps of every channel, and the
future actions, to the whole future; L = the shortest context), and `latent_direct` (ridge from
the frozen context embedding to the whole future: what the embedding holds without the
predictor). Errors are on the scaled values (`data.standardize`), averaged over channels and
series, per patch of the horizon (`horizon_steps`: the patch's last step ahead).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from polyjepa.errors import ConfigError, DataError
from polyjepa.hub import load_objective
from polyjepa.modalities.timeseries.preprocess import SeriesArrays

if TYPE_CHECKING:
    from polyjepa.build import Recipe
    from polyjepa.objectives import LatentRollout

ALPHAS = np.logspace(-3, 3, 13)


def _ridge(x: np.ndarray, y: np.ndarray) -> RidgeCV:
    return RidgeCV(alphas=ALPHAS).fit(x, y)


class _Split:
    """One set's series cut at `H` whole patches before their end: context lengths `[B]` (in
    steps), the future values `[B, C, H * P]` and actions `[B, A, H * P]` (or None)."""

    def __init__(self, data: SeriesArrays, patch: int, horizon: int, split: str) -> None:
        whole = data.lengths // patch  # whole patches per series
        keep = (whole >= horizon + 1).nonzero().flatten()
        if len(keep) == 0:
            raise DataError(f"no {split} series has the {horizon + 1} whole patches of {patch} "
                            f"steps a {horizon}-patch forecast needs")
        self.keep = keep
        self.context = (whole[keep] - horizon) * patch  # [B] steps
        self.values = data.values[keep]
        span = horizon * patch
        index = self.context[:, None] + torch.arange(span)  # [B, H * P]
        self.future = torch.gather(self.values, 2, index[:, None].expand(-1, self.values.shape[1], -1))
        self.actions = None if data.actions is None else data.actions[keep]
        self.future_actions = None if self.actions is None else torch.gather(
            self.actions, 2, index[:, None].expand(-1, self.actions.shape[1], -1))

    def inputs(self) -> dict[str, torch.Tensor]:
        """The context only: every step from the cut on is padding."""
        x = {"values": self.values * (torch.arange(self.values.shape[2]) < self.context[:, None])[:, None],
             "length": self.context}
        if self.actions is not None:
            x["actions"] = self.actions
        return x

    def lags(self, lag: int) -> np.ndarray:
        """The last `lag` context steps of every channel, and the future actions `[B, F]`."""
        index = self.context[:, None] - lag + torch.arange(lag)
        past = torch.gather(self.values, 2, index[:, None].expand(-1, self.values.shape[1], -1))
        parts = [past.flatten(1)]
        if self.future_actions is not None:
            parts.append(self.future_actions.flatten(1))
        return torch.cat(parts, 1).numpy()


@torch.no_grad()
def _latents(objective: LatentRollout, split: _Split, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The last context step's embedding `[B, D]` and its rollout `[B, H, D]`."""
    x = split.inputs()
    z, _ = objective.step_latents(objective.online, x)  # [B, N, D]
    tokenizer = objective.online.tokenizer
    last = split.context // tokenizer.patch - 1  # the last context patch
    z_last = z[torch.arange(len(last)), last]  # [B, D]
    actions = tokenizer.step_actions(x)  # [B, N, F] | None
    if actions is not None:
        steps = last[:, None] + 1 + torch.arange(horizon)  # the patches rolled into
        actions = actions[torch.arange(len(last))[:, None], steps][:, None]  # [B, 1, H, F]
    rolled = objective.rollout(z_last[:, None], actions, horizon)[:, 0]  # [B, H, D]
    return z_last.numpy(), rolled.numpy()


@torch.no_grad()
def _decoder(objective: LatentRollout, train_set: SeriesArrays, train: _Split, rolled: np.ndarray) -> RidgeCV:
    """Ridge from step embeddings (the target encoder's, layer-normalised, and the training
    rollouts `[B, H, D]`) to their patches' values `[C * P]`."""
    tokenizer = objective.online.tokenizer
    p = tokenizer.patch
    z, valid = objective.step_latents(objective.target, {"values": train_set.values,
                                                         "length": train_set.lengths})
    z = objective.start(z)
    span = z.shape[1] * p
    values = torch.nn.functional.pad(train_set.values, (0, max(span - train_set.values.shape[2], 0)))
    patches = values[..., :span].unfold(-1, p, p).transpose(1, 2).flatten(2)  # [B, N, C * P]
    keep = valid & ((train_set.lengths // p)[:, None] > torch.arange(z.shape[1]))  # whole patches
    b, c, _ = train.future.shape
    future = train.future.view(b, c, -1, p).transpose(1, 2).flatten(2)  # [B, H, C * P]
    x = np.concatenate([z[keep].numpy(), rolled.reshape(-1, rolled.shape[-1])])
    y = np.concatenate([patches[keep].numpy(), future.reshape(-1, future.shape[-1]).numpy()])
    return _ridge(x, y)


def _errors(pred: np.ndarray, truth: np.ndarray, patch: int, horizon: int) -> tuple[list, list]:
    """Per-horizon-patch MSE and MAE of `[B, C, H * P]` forecasts."""
    diff = (pred - truth).reshape(*truth.shape[:2], horizon, patch)
    return ([float((diff[:, :, h] ** 2).mean()) for h in range(horizon)],
            [float(np.abs(diff[:, :, h]).mean()) for h in range(horizon)])


def forecast_protocol(run_dir: str | Path, recipe: Recipe, train_set: SeriesArrays, test_set: SeriesArrays,
                      device: torch.device) -> dict:
    """The forecasting table of a `latent_rollout` run (see the module docstring); on the CPU
    whatever `device` is."""
    if recipe.cfg.data.standardize == "per_series":
        raise ConfigError(f"{recipe.source}: forecast needs data.standardize per_dataset or none: "
                          "per-series statistics include the future being forecast")
    objective = load_objective(run_dir)
    if not hasattr(objective, "rollout"):
        raise ConfigError(f"{recipe.source}: eval.protocols: forecast needs a latent_rollout run "
                          f"(objective '{recipe.cfg.objective['name']}' has no predictor over time)")
    tokenizer = objective.online.tokenizer
    if tokenizer.stride != tokenizer.patch:
        raise ConfigError(f"{recipe.source}: forecast needs non-overlapping patches (stride = patch)")
    patch, horizon = tokenizer.patch, min(objective.horizon, objective.steps - 1)
    train, test = _Split(train_set, patch, horizon, "training"), _Split(test_set, patch, horizon, "test")
    shape = test.future.shape
    truth = test.future.numpy()
    z_train, rolled_train = _latents(objective, train, horizon)
    z_test, rolled = _latents(objective, test, horizon)
    decoder = _decoder(objective, train_set, train, rolled_train)
    decoded = decoder.predict(rolled.reshape(-1, rolled.shape[-1]))
    ts_jepa = decoded.reshape(shape[0], horizon, shape[1], patch).transpose(0, 2, 1, 3).reshape(shape)
    lag = int(min(train.context.min(), test.context.min()))
    forecasts = {
        "ts_jepa": ts_jepa,
        "latent_direct": _ridge(z_train, train.future.flatten(1).numpy()).predict(z_test).reshape(shape),
        "linear_ar": _ridge(train.lags(lag), train.future.flatten(1).numpy()).predict(
            test.lags(lag)).reshape(shape),
        "naive": test.lags(1)[:, : shape[1], None].repeat(shape[2], axis=2),
    }
    errors = {name: _errors(pred, truth, patch, horizon) for name, pred in forecasts.items()}
    table = []
    for h in range(horizon):
        row = {"horizon_steps": (h + 1) * patch}
        for name, (mse, mae) in errors.items():
            row[f"{name}_mse"], row[f"{name}_mae"] = mse[h], mae[h]
        table.append(row)
    return {"table": table, "n_train_series": len(train.keep), "n_test_series": len(test.keep),
            "ar_lag_steps": lag, "units": "scaled values (data.standardize)"}
