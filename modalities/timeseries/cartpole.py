"""Cart-pole trajectories with actions, and the control test for latent prediction.

The simulator follows Gym's CartPole-v1 (Barto, Sutton & Anderson 1983): a cart of 1 kg and a
pole of 0.1 kg and half-length 0.5 m, integrated with explicit Euler at `dt` = 0.02 s under a
continuous force clipped to +-`force_limit`. An episode fails when |x| > 2.4 m or
|theta| > 12 degrees. The state is `[x, x_dot, theta, theta_dot]`; theta > 0 leans the pole
towards +x, and a positive force pushes the cart towards +x.

Trajectories come from an LQR controller (its gain derived from the equations linearised at
the upright position) acting on noisy sensor readings, with Gaussian exploration noise added to
its force. The control test keeps the pole up while a policy receives an observation only every
`k` steps; `HoldLastPolicy` and `FullObservationPolicy` are its two baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np
from scipy.linalg import solve_continuous_are

CARTPOLE = "builtin:cartpole"  # the `data.path` that selects these trajectories
STATE_NAMES = ("x", "x_dot", "theta", "theta_dot")
X_LIMIT = 2.4
THETA_LIMIT = 12 * 2 * np.pi / 360
MAX_ROUNDS = 20  # batches `generate` simulates before giving up on collecting survivors


@dataclass
class CartPoleConfig:
    """`data.cartpole`: simulated trajectories (a recipe sets `data.path: builtin:cartpole`)."""

    train_trajectories: int = 200
    test_trajectories: int = 40
    steps: int = 200  # per trajectory
    dt: float = 0.02
    force_limit: float = 10.0
    # Std of each sensed variable (x, x_dot, theta, theta_dot): a 1 cm position encoder, a
    # 0.3-degree angle encoder, and velocities from differencing them (noisier). That is 7-20%
    # of each variable's spread along the trajectories: visible, yet the LQR still holds.
    sensor_noise: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.005, 0.05])
    # Std (N) of Gaussian noise added to the controller's force at every step, so that the
    # trajectories visit more of the state space (theta's spread 0.037 rad, against 0.016 without
    # noise) with varied actions (7% of them at the force limit). Measured: no failure in 20000
    # trajectories of 200 steps at 5 N, 0.025% at 6 N, 6% at 8 N.
    exploration_noise: float = 5.0
    # Each initial state variable ~ U(-r, r); 0.1 rad is half the failure angle.
    start_range: float = 0.1
    seed: int = 0  # the training set uses `seed`, the test set `seed + 1`
    # The control test (`eval.protocols: [control]`): episodes run in parallel, their length in
    # steps, and the observation intervals k compared.
    control_episodes: int = 50
    control_steps: int = 500
    control_every: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 15, 20])


class CartPole:
    """Batched cart-pole: `step(state [E, 4], force [E]) -> next state [E, 4]`."""

    def __init__(self, dt: float = 0.02, force_limit: float = 10.0, gravity: float = 9.8,
                 mass_cart: float = 1.0, mass_pole: float = 0.1, half_length: float = 0.5) -> None:
        self.dt, self.force_limit, self.gravity = dt, force_limit, gravity
        self.mass_pole, self.half_length = mass_pole, half_length
        self.total_mass = mass_cart + mass_pole

    def accelerations(self, state: np.ndarray, force: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cart and pole accelerations `[E]`, `[E]` (Gym's equations of motion)."""
        theta, theta_dot = state[:, 2], state[:, 3]
        sin, cos = np.sin(theta), np.cos(theta)
        pole_ml = self.mass_pole * self.half_length
        temp = (force + pole_ml * theta_dot ** 2 * sin) / self.total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.half_length * (4 / 3 - self.mass_pole * cos ** 2 / self.total_mass))
        x_acc = temp - pole_ml * theta_acc * cos / self.total_mass
        return x_acc, theta_acc

    def step(self, state: np.ndarray, force: np.ndarray) -> np.ndarray:
        """The state `[E, 4]` one explicit-Euler step later; `force` `[E]` is clipped first."""
        x_acc, theta_acc = self.accelerations(state, self.clip(force))
        rates = np.stack([state[:, 1], x_acc, state[:, 3], theta_acc], axis=1)
        return state + self.dt * rates

    def clip(self, force: np.ndarray) -> np.ndarray:
        return np.clip(force, -self.force_limit, self.force_limit)

    @staticmethod
    def failed(state: np.ndarray) -> np.ndarray:
        """`[E]` bool: the cart left the track or the pole passed 12 degrees."""
        return (np.abs(state[:, 0]) > X_LIMIT) | (np.abs(state[:, 2]) > THETA_LIMIT)

    def linearised(self) -> tuple[np.ndarray, np.ndarray]:
        """`A [4, 4]`, `B [4]` of the continuous dynamics `ds/dt = A s + B F` at the upright
        equilibrium (small angles: sin = theta, cos = 1, theta_dot^2 = 0)."""
        total, pole_ml = self.total_mass, self.mass_pole * self.half_length
        denominator = self.half_length * (4 / 3 - self.mass_pole / total)
        theta_acc_theta = self.gravity / denominator
        theta_acc_force = -1 / (total * denominator)
        x_acc_theta = -pole_ml * theta_acc_theta / total
        x_acc_force = 1 / total - pole_ml * theta_acc_force / total
        a = np.array([[0, 1, 0, 0], [0, 0, x_acc_theta, 0],
                      [0, 0, 0, 1], [0, 0, theta_acc_theta, 0]], dtype=float)
        return a, np.array([0, x_acc_force, 0, theta_acc_force])


def lqr_gain(a: np.ndarray, b: np.ndarray, q: tuple[float, ...] = (1.0, 1.0, 10.0, 1.0),
             r: float = 0.1) -> np.ndarray:
    """Continuous-time LQR gain `K [4]` (the force is `-K s`) for `ds/dt = A s + B F`, minimising
    the integral of `s' diag(q) s + r F^2`."""
    b = b.reshape(-1, 1)
    p = solve_continuous_are(a, b, np.diag(q), np.array([[r]]))
    return (b.T @ p / r)[0]


class LQRController:
    """`act(obs [E, 4]) -> force [E]`: `-K obs` clipped to the simulator's force limit."""

    def __init__(self, sim: CartPole) -> None:
        self.sim, self.gain = sim, lqr_gain(*sim.linearised())

    def act(self, observations: np.ndarray) -> np.ndarray:
        return self.sim.clip(-observations @ self.gain)


def sense(states: np.ndarray, noise: list[float], rng: np.random.Generator) -> np.ndarray:
    """Noisy readings `[E, 4]` of `states [E, 4]`, with std `noise [4]` per variable."""
    return states + rng.normal(size=states.shape) * np.asarray(noise)


def start_states(cfg: CartPoleConfig, num: int, rng: np.random.Generator) -> np.ndarray:
    """Initial states `[num, 4]`, each variable ~ U(-start_range, start_range)."""
    return rng.uniform(-cfg.start_range, cfg.start_range, size=(num, 4))


def rollout(cfg: CartPoleConfig, num: int,
            rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`num` exploratory LQR trajectories: `observations`, `states` `[num, 4, T]` and `actions`
    `[num, 1, T]` (state `t + 1` is `step(state t, action t)`); and which failed, `[num]` bool."""
    sim = CartPole(cfg.dt, cfg.force_limit)
    controller = LQRController(sim)
    states = np.empty((num, 4, cfg.steps))
    observations, actions = np.empty_like(states), np.empty((num, 1, cfg.steps))
    state, failed = start_states(cfg, num, rng), np.zeros(num, dtype=bool)
    for t in range(cfg.steps):
        states[:, :, t] = state
        observations[:, :, t] = sense(state, cfg.sensor_noise, rng)
        noise = rng.normal(scale=cfg.exploration_noise, size=num)
        actions[:, 0, t] = sim.clip(controller.act(observations[:, :, t]) + noise)
        failed |= sim.failed(state)
        state = sim.step(state, actions[:, 0, t])
    return {"observations": observations, "actions": actions, "states": states}, failed


def generate(cfg: CartPoleConfig, num: int, seed: int) -> dict[str, np.ndarray]:
    """`num` trajectories in which the pole stayed up: `observations [N, 4, T]` (noisy readings
    of the states, what the controller saw), `actions [N, 1, T]` (the force applied at each step,
    after exploration noise and clipping), `states [N, 4, T]` (true).

    Trajectories that fail are dropped and more are simulated, in batches of `num` seeded by
    `(seed, batch)`, until `num` survive: the result depends only on `(cfg, num, seed)`.

    Raises:
        ValueError: fewer than `num` survived `MAX_ROUNDS` batches (too much exploration noise).
    """
    kept: list[dict[str, np.ndarray]] = []
    for batch in range(MAX_ROUNDS):
        data, failed = rollout(cfg, num, np.random.default_rng([seed, batch]))
        kept.append({key: value[~failed] for key, value in data.items()})
        if sum(len(part["states"]) for part in kept) >= num:
            return {key: np.concatenate([part[key] for part in kept])[:num] for key in kept[0]}
    raise ValueError(f"only {sum(len(part['states']) for part in kept)} of {num} cart-pole "
                     f"trajectories kept the pole up in {MAX_ROUNDS} batches; lower "
                     f"exploration_noise ({cfg.exploration_noise}) or start_range")


class Policy(Protocol):
    """A controller in the control test. A policy that sets `needs_every_step = True` is given
    an observation at every step whatever `every` is (the full-observation reference)."""

    def reset(self, observations: np.ndarray) -> None:
        """Start new episodes from the first observation `[E, 4]` of each environment."""

    def act(self, observations: np.ndarray | None, step: int) -> np.ndarray:
        """Force `[E]` at `step`, given this step's observations `[E, 4]` or None (no reading)."""


def control_test(policy: Policy, every: int, episodes: int = 50, steps: int = 500,
                 cfg: CartPoleConfig | None = None, seed: int = 1234) -> dict[str, float]:
    """Run `episodes` environments in parallel for `steps` steps; the policy gets noisy
    observations at steps 0, `every`, 2 `every`, ... and None otherwise.

    Returns `success_rate` (share of episodes that never failed), `mean_stable_steps` (steps
    taken before the state left the bounds; `steps` for episodes that never failed) and `every`.
    A failed environment is frozen in its failed state for the rest of the run.
    """
    cfg = cfg or CartPoleConfig()
    rng = np.random.default_rng(seed)
    sim = CartPole(cfg.dt, cfg.force_limit)
    state = start_states(cfg, episodes, rng)
    gap = 1 if getattr(policy, "needs_every_step", False) else every
    stable = np.full(episodes, steps)
    for t in range(steps):
        observations = sense(state, cfg.sensor_noise, rng) if t % gap == 0 else None
        if t == 0:
            policy.reset(cast(np.ndarray, observations))  # step 0 is always observed (0 % gap == 0)
        alive = stable == steps
        state = np.where(alive[:, None], sim.step(state, policy.act(observations, t)), state)
        stable[alive & sim.failed(state)] = t
    return {"success_rate": float(np.mean(stable == steps)),
            "mean_stable_steps": float(np.mean(stable)), "every": every}


class HoldLastPolicy:
    """Baseline (b): the LQR controller acting on the last observation received."""

    def __init__(self, cfg: CartPoleConfig) -> None:
        self.controller = LQRController(CartPole(cfg.dt, cfg.force_limit))
        self.last: np.ndarray | None = None

    def reset(self, observations: np.ndarray) -> None:
        self.last = observations

    def act(self, observations: np.ndarray | None, step: int) -> np.ndarray:
        if observations is not None:
            self.last = observations
        if self.last is None:
            raise RuntimeError("act() before reset(): the policy has no observation yet")
        return self.controller.act(self.last)


class FullObservationPolicy(HoldLastPolicy):
    """Baseline (c): the LQR controller observing every step (`needs_every_step`)."""

    needs_every_step = True
