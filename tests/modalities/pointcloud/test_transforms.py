"""Batched point-cloud augmentations: each keeps the geometry it promises to keep."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.modalities.pointcloud.transforms import (
    Normalize,
    RandomRotate,
    RandomScale,
    RandomTranslate,
    rotation_matrices,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b: int = 6, p: int = 200, c: int = 4) -> torch.Tensor:
    return torch.randn(b, p, c, generator=gen(99))


def test_rotation_about_an_axis_keeps_norms_and_that_coordinate():
    x = batch()
    out = RandomRotate(axes=["z"])(x, gen(1))
    torch.testing.assert_close(out[..., :3].norm(dim=-1), x[..., :3].norm(dim=-1))
    torch.testing.assert_close(out[..., 2], x[..., 2])
    torch.testing.assert_close(out[..., 3], x[..., 3])  # extra column untouched
    assert not torch.allclose(out[..., 0], x[..., 0])
    # per cloud: different angles; per batch: one angle for all
    angle = lambda o: torch.atan2(o[:, 0, 1], o[:, 0, 0]) - torch.atan2(x[:, 0, 1], x[:, 0, 0])  # noqa: E731
    per_cloud = torch.remainder(angle(out), 2 * math.pi)
    assert per_cloud.std() > 0.1
    shared = torch.remainder(angle(RandomRotate(axes=["z"], per_batch=True)(x, gen(1))),
                             2 * math.pi)
    assert torch.allclose(shared, shared[0].expand_as(shared), atol=1e-4)


def test_rotation_matrices_are_orthonormal():
    r = rotation_matrices(torch.linspace(-3, 3, 7, dtype=torch.float64), axis=1)
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(7, 3, 3))
    assert torch.allclose(torch.linalg.det(r), torch.ones(7, dtype=torch.float64))


def test_scale_stays_in_range_per_axis_and_symmetries_mirror():
    x = torch.ones(500, 1, 3)
    out = RandomScale(0.8, 1.2)(x, gen(2))[:, 0]
    assert (out >= 0.8).all() and (out <= 1.2).all()
    assert (out[:, 0] != out[:, 1]).all()  # anisotropic
    iso = RandomScale(0.8, 1.2, anisotropic=False)(x, gen(2))[:, 0]
    assert torch.equal(iso[:, 0], iso[:, 1])
    mirrored = RandomScale(0.8, 1.2, symmetries=(1, 0, 0))(x, gen(3))[:, 0]
    assert (mirrored[:, 0] < 0).float().mean().item() == pytest.approx(0.5, abs=0.1)
    assert (mirrored[:, 1:] > 0).all()
    with pytest.raises(ValueError, match="symmetries"):
        RandomScale(symmetries=(2, 0, 0))


def test_translate_shifts_every_point_of_a_cloud_alike():
    x = batch()
    out = RandomTranslate(0.2)(x, gen(4))
    shift = out[..., :3] - x[..., :3]
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert shift.abs().max() <= 0.2 + 1e-6


def test_same_seed_same_views():
    x = batch()
    for aug in (RandomRotate(), RandomScale(), RandomTranslate()):
        assert torch.equal(aug(x, gen(5)), aug(x, gen(5)))
        assert not torch.equal(aug(x, gen(5)), aug(x, gen(6)))


def test_normalize_step_in_the_chain():
    x = batch() * 7 + 3
    out = Normalize(["center", "unit_sphere"])(x, gen(0))
    assert out[..., :3].mean(1).abs().max() < 1e-5
    torch.testing.assert_close(out[..., :3].norm(dim=-1).amax(1), torch.ones(6))
    with pytest.raises(ValueError, match="wobble"):
        Normalize(["wobble"])
