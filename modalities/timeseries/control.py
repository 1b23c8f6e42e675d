"""The `control` protocol: the TS-JEPA paper's experiment in small, on the built-in cart-pole.

A semantic actor (an MLP on embeddings, TS-JEPA's 1024-256 hidden widths) is trained to imitate
the controller that generated the training trajectories: from the embedding of each observed
step (the online encoder's, layer-normalised like the rollout's) to the force applied at that
step. In the control test an observation arrives only every `k` steps; when one arrives the
encoder embeds it, in between the predictor rolls the embedding forward with the actor's own
forces, and the actor acts on whichever embedding it has. Reported against `k` with the two
baselines of `cartpole.py`: the LQR controller holding the last observation, and the LQR
controller observing every step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from polyjepa.errors import ConfigError
from polyjepa.hub import load_objective, read_export
from polyjepa.modalities.timeseries.cartpole import (
    CARTPOLE,
    CartPoleConfig,
    FullObservationPolicy,
    HoldLastPolicy,
    Policy,
    control_test,
)
from polyjepa.modalities.timeseries.preprocess import SeriesArrays

if TYPE_CHECKING:
    from polyjepa.build import Recipe
    from polyjepa.objectives import LatentRollout


class Actor(nn.Module):
    """Embedding `[.., D]` -> force `[..]` (TS-JEPA's semantic actor: two hidden layers of 1024
    and 256 with ReLU and dropout)."""

    def __init__(self, dim: int, hidden: tuple[int, int] = (1024, 256), dropout: float = 0.2) -> None:
        super().__init__()
        a, b = hidden
        self.net = nn.Sequential(nn.Linear(dim, a), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout), nn.Linear(b, 1))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(-1)


@torch.no_grad()
def _embeddings(objective: LatentRollout, data: SeriesArrays) -> tuple[Tensor, Tensor]:
    """Every real step's layer-normalised online embedding `[M, D]` and the force applied at
    that step `[M]`."""
    if data.actions is None:
        raise ValueError("the actor imitates the applied forces: the series need actions "
                         "(builtin:cartpole has them)")
    z, valid = objective.step_latents(objective.online, {"values": data.values,
                                                         "length": data.lengths})
    return objective.start(z)[valid], data.actions[:, 0][valid]


def train_actor(objective: LatentRollout, train: SeriesArrays, epochs: int = 30, batch_size: int = 512,
                lr: float = 1e-3, seed: int = 0) -> Actor:
    """Fit the actor to the training steps' forces (MSE, AdamW)."""
    z, force = _embeddings(objective, train)
    torch.manual_seed(seed)
    actor = Actor(z.shape[1])
    optimizer = torch.optim.AdamW(actor.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(z), generator=g).split(batch_size):
            loss = nn.functional.mse_loss(actor(z[idx]), force[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return actor.eval()


class LatentPolicy:
    """TS-JEPA in the loop: embed each observation that arrives, roll the embedding forward with
    the forces applied while none does, act with the actor on the current embedding."""

    def __init__(self, objective: LatentRollout, actor: Actor, mean: np.ndarray, std: np.ndarray,
                 force_limit: float) -> None:
        self.objective, self.actor, self.force_limit = objective, actor, force_limit
        self.mean, self.std = mean, std
        self.z: Tensor | None = None
        self.force: Tensor | None = None

    @torch.no_grad()
    def _embed(self, observations: np.ndarray) -> Tensor:
        scaled = (observations - self.mean) / (self.std + 1e-8)
        x = {"values": torch.as_tensor(scaled, dtype=torch.float32)[:, :, None],
             "length": torch.ones(len(observations), dtype=torch.long)}
        z, _ = self.objective.step_latents(self.objective.online, x)
        return self.objective.start(z[:, 0])  # [E, D]

    def reset(self, observations: np.ndarray) -> None:
        self.z, self.force = self._embed(observations), None

    @torch.no_grad()
    def act(self, observations: np.ndarray | None, step: int) -> np.ndarray:
        if observations is not None:
            self.z = self._embed(observations)
        elif self.force is not None:
            self.z = self.objective.predictor(self.z, self.force[:, None])
        self.force = self.actor(self.z).clamp(-self.force_limit, self.force_limit)
        return self.force.numpy().astype(np.float64)


def control_protocol(run_dir: str | Path, recipe: Recipe, train_set: SeriesArrays, test_set: SeriesArrays,
                     device: torch.device) -> dict:
    """Success rate and stable steps against the observation interval `k` (see the module);
    episodes, their length and the intervals come from `data.cartpole.control_*`. Runs on the
    CPU whatever `device` is (one observation per environment and step: a GPU would not help)."""
    data = recipe.cfg.data
    if data.path != CARTPOLE:
        raise ConfigError(f"{recipe.source}: eval.protocols: control runs on data.path "
                          "builtin:cartpole")
    objective = load_objective(run_dir)
    tokenizer = objective.online.tokenizer
    if (tokenizer.patch != 1 or objective.online.encoder.causal_window != 1
            or tokenizer.pos.abs().sum() > 0):
        raise ConfigError(f"{recipe.source}: control embeds one observation at a time, wherever "
                          "it falls: it needs model.tokenizer.patch 1, positions false and "
                          "model.encoder.causal_window 1")
    sim: CartPoleConfig = data.cartpole
    actor = train_actor(objective, train_set, seed=recipe.cfg.eval.seed)
    scaler = train_set_scaler(recipe, run_dir)
    policies: dict[str, Policy] = {
        "ts_jepa": LatentPolicy(objective, actor, *scaler, sim.force_limit),
        "hold_last": HoldLastPolicy(sim), "full_observation": FullObservationPolicy(sim)}
    table = []
    for every in sim.control_every:
        row: dict = {"every": every}
        for name, policy in policies.items():
            out = control_test(policy, every, sim.control_episodes, sim.control_steps, sim,
                               seed=recipe.cfg.eval.seed + 1234)
            row[f"{name}_success"] = out["success_rate"]
            row[f"{name}_stable_steps"] = out["mean_stable_steps"]
        table.append(row)
    z, force = _embeddings(objective, test_set)
    with torch.no_grad():
        actor_mse = float(nn.functional.mse_loss(actor(z), force))
    return {"table": table, "episodes": sim.control_episodes, "steps": sim.control_steps,
            "actor_test_mse": actor_mse}


def train_set_scaler(recipe: Recipe, run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel mean and std the run scaled its observations with."""
    stats = read_export(run_dir)[0]["meta"]["scaler"]
    if stats["mode"] != "per_dataset":
        raise ConfigError(f"{recipe.source}: control needs data.standardize: per_dataset (an "
                          "observation at a time cannot be standardised on its own)")
    return np.asarray(stats["mean"]), np.asarray(stats["std"])
