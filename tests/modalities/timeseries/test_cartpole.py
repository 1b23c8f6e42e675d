"""The cart-pole simulator, its LQR controller, the trajectory generator and the control test."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from polyjepa.modalities.timeseries.cartpole import (
    THETA_LIMIT,
    CartPole,
    CartPoleConfig,
    FullObservationPolicy,
    HoldLastPolicy,
    LQRController,
    control_test,
    generate,
    lqr_gain,
)


def steps_to_fall(sim: CartPole, theta: float, limit: int = 200) -> int:
    """Steps until the uncontrolled pole, released at rest at `theta`, passes 12 degrees."""
    state = np.array([[0.0, 0.0, theta, 0.0]])
    for t in range(limit):
        state = sim.step(state, np.zeros(1))
        if sim.failed(state)[0]:
            return t + 1
    return limit


class ZeroForce:
    """No control at all: every episode must fail."""

    def reset(self, observations):
        self.envs = len(observations)

    def act(self, observations, step):
        return np.zeros(self.envs)


class Recorder(HoldLastPolicy):
    """Hold-last control that records what the harness hands it."""

    def reset(self, observations):
        super().reset(observations)
        self.first, self.seen = observations, []

    def act(self, observations, step):
        self.seen.append((step, observations))
        return super().act(observations, step)


def test_linearisation_matches_finite_differences_and_known_values():
    sim = CartPole()
    a, b = sim.linearised()
    upright, eps = np.zeros((1, 4)), 1e-6
    for i in range(4):  # an Euler step is s + dt f(s): its Jacobian is I + dt A
        nudged = upright.copy()
        nudged[0, i] = eps
        change = sim.step(nudged, np.zeros(1)) - sim.step(upright, np.zeros(1)) - nudged
        np.testing.assert_allclose(change[0] / (sim.dt * eps), a[:, i], atol=1e-4)
    pushed = sim.step(upright, np.array([1.0]))[0] / sim.dt  # linear in F at upright
    np.testing.assert_allclose(pushed, b, atol=1e-12)
    # independent derivation (notes): D = l (4/3 - m / M) = 0.621212
    assert a[3, 2] == pytest.approx(15.775610, abs=1e-5)
    assert a[1, 2] == pytest.approx(-0.717073, abs=1e-5)
    np.testing.assert_allclose(b, [0, 0.975610, 0, -1.463415], atol=1e-6)


def test_step_clips_force_and_pushes_cart_forward_pole_backward():
    sim = CartPole()
    upright = np.zeros((2, 4))
    hard, limit = sim.step(upright, np.array([100.0, 10.0])), sim.step(upright, np.array([10.0, 10.0]))
    np.testing.assert_array_equal(hard, limit)
    assert hard[0, 1] > 0 and hard[0, 3] < 0  # the cart speeds up to +x, the pole tips to -theta


def test_uncontrolled_pole_falls_its_own_way_and_a_longer_one_falls_slower():
    sim = CartPole()
    state = np.array([[0.0, 0.0, 0.1, 0.0], [0.0, 0.0, -0.1, 0.0]])
    thetas = []
    for _ in range(10):
        state = sim.step(state, np.zeros(2))
        thetas.append(state[:, 2])
    thetas = np.array(thetas)
    assert np.all(np.diff(thetas[:, 0]) >= 0) and thetas[-1, 0] > 0.1  # leans further +theta
    np.testing.assert_allclose(thetas[:, 1], -thetas[:, 0])  # mirror symmetric
    short = steps_to_fall(sim, 0.1)
    # linearised: theta = 0.1 cosh(sqrt(15.78) t) reaches 12 degrees after ~0.35 s = ~17 steps
    assert 12 <= short <= 22
    assert steps_to_fall(CartPole(half_length=1.0), 0.1) > short + 3
    assert not sim.failed(np.array([[2.39, 0, THETA_LIMIT * 0.99, 0]]))[0]
    assert sim.failed(np.array([[2.41, 0, 0, 0], [0, 0, -THETA_LIMIT * 1.01, 0]])).all()


def test_lqr_gain_stabilises_the_linearisation():
    sim = CartPole()
    a, b = sim.linearised()
    gain = lqr_gain(a, b)
    assert np.all(np.linalg.eigvals(a - np.outer(b, gain)).real < 0)
    np.testing.assert_allclose(gain, [-3.1623, -5.9155, -49.5072, -12.8444], atol=1e-3)
    force = LQRController(sim).act(np.array([[0, 0, 0.05, 0], [0, 0, 1.0, 0]]))
    assert force[0] > 0 and force[1] == sim.force_limit  # push under a +theta lean, clipped


def test_lqr_keeps_the_nonlinear_pole_up_with_full_observations():
    cfg = CartPoleConfig()
    for every in (1, 20):  # a full-observation policy is shown every step whatever `every` is
        result = control_test(FullObservationPolicy(cfg), every, episodes=100, steps=500, cfg=cfg)
        assert result["success_rate"] >= 0.95 and result["every"] == every


def test_generate_shapes_determinism_and_survivors():
    cfg = CartPoleConfig(steps=120)
    data = generate(cfg, 30, seed=3)
    assert data["observations"].shape == (30, 4, 120) and data["states"].shape == (30, 4, 120)
    assert data["actions"].shape == (30, 1, 120)
    again, other = generate(cfg, 30, seed=3), generate(cfg, 30, seed=4)
    for key in data:
        np.testing.assert_array_equal(data[key], again[key])
        assert not np.array_equal(data[key], other[key])
    states = data["states"].transpose(0, 2, 1).reshape(-1, 4)
    assert not CartPole().failed(states).any()
    assert np.abs(data["actions"]).max() <= cfg.force_limit
    assert data["actions"].std() > cfg.exploration_noise / 2  # noise explored, not pure LQR


def test_generate_replaces_failed_trajectories_or_says_it_cannot():
    wild = CartPoleConfig(steps=200, exploration_noise=8.0)  # ~6% of trajectories fail
    data = generate(wild, 60, seed=0)
    assert len(data["states"]) == 60
    assert not CartPole().failed(data["states"].transpose(0, 2, 1).reshape(-1, 4)).any()
    with pytest.raises(ValueError, match="exploration_noise"):
        generate(replace(wild, exploration_noise=1000.0), 5, seed=0)


def test_recorded_actions_reproduce_the_states():
    cfg = CartPoleConfig(steps=100)
    data = generate(cfg, 20, seed=0)
    sim = CartPole(cfg.dt, cfg.force_limit)
    state = data["states"][:, :, 0]
    for t in range(cfg.steps - 1):
        state = sim.step(state, data["actions"][:, 0, t])
        np.testing.assert_array_equal(state, data["states"][:, :, t + 1])


def test_observation_noise_has_the_configured_std():
    cfg = CartPoleConfig(steps=200, sensor_noise=[0.02, 0.1, 0.01, 0.03])
    data = generate(cfg, 50, seed=0)
    error = data["observations"] - data["states"]
    np.testing.assert_allclose(error.std(axis=(0, 2)), cfg.sensor_noise, rtol=0.03)
    assert np.all(np.abs(error.mean(axis=(0, 2))) < 0.05 * np.array(cfg.sensor_noise))


def test_policy_sees_observations_only_every_k_steps():
    cfg = CartPoleConfig()
    policy = Recorder(cfg)
    control_test(policy, every=3, episodes=4, steps=10, cfg=cfg)
    assert [step for step, _ in policy.seen] == list(range(10))
    assert [step for step, obs in policy.seen if obs is not None] == [0, 3, 6, 9]
    assert policy.seen[0][1] is policy.first and policy.first.shape == (4, 4)


def test_zero_force_baseline_fails_every_episode():
    result = control_test(ZeroForce(), every=1, episodes=50, steps=500)
    assert result["success_rate"] == 0.0 and result["mean_stable_steps"] < 100


def test_holding_the_last_observation_degrades_with_the_gap():
    cfg = CartPoleConfig()
    results = {k: control_test(HoldLastPolicy(cfg), k, episodes=50, cfg=cfg) for k in (1, 5, 10, 20)}
    assert results[1]["success_rate"] == results[5]["success_rate"] == 1.0
    assert results[10]["success_rate"] < 0.8 and results[10]["mean_stable_steps"] < 450
    assert results[20]["success_rate"] == 0.0
    assert results[20]["mean_stable_steps"] < results[10]["mean_stable_steps"]
