"""Synthetic point clouds with class structure, for tests and demos: surface samples of
spheres, cubes, cylinders and tori, randomly scaled, stretched, rotated and jittered."""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ["sphere", "cube", "cylinder", "torus"]


def _sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cube(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.uniform(-1, 1, size=(n, 3))
    face = rng.integers(0, 3, n)
    v[np.arange(n), face] = rng.choice([-1.0, 1.0], n)
    return v


def _cylinder(n: int, rng: np.random.Generator) -> np.ndarray:
    angle, height = rng.uniform(0, 2 * np.pi, n), rng.uniform(-1, 1, n)
    return np.stack([np.cos(angle), np.sin(angle), height], axis=1)


def _torus(n: int, rng: np.random.Generator, major: float = 1.0, minor: float = 0.35) -> np.ndarray:
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    ring = major + minor * np.cos(v)
    return np.stack([ring * np.cos(u), ring * np.sin(u), minor * np.sin(v)], axis=1)


SHAPES = [_sphere, _cube, _cylinder, _torus]


def synthetic_clouds(n: int, points: int = 1024, noise: float = 0.02,
                     seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """`n` clouds `[points, 3]` float32 and their class indices (balanced, shuffled)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPES))
    clouds = []
    for label in labels:
        cloud = SHAPES[label](points, rng) * rng.uniform(0.5, 2.0) * rng.uniform(0.8, 1.25, 3)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a random rotation (or reflection)
        cloud = cloud @ q.T + rng.normal(scale=noise, size=cloud.shape) + rng.normal(size=3)
        clouds.append(cloud.astype(np.float32))
    return clouds, labels.tolist()
