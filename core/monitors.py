"""Collapse monitors on a batch of embeddings `[B, D]`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def normalized_std(z: Tensor) -> float:
    """Mean per-dimension std of centred, L2-normalised embeddings, times sqrt(D).

    About 1 for embeddings spread over the sphere, 0 when all samples map to one point
    (SimSiam's collapse indicator, rescaled to be width-independent).
    """
    z = F.normalize(z.float() - z.float().mean(0), dim=1)
    return (z.std(dim=0).mean() * math.sqrt(z.shape[1])).item()


def rankme(z: Tensor, eps: float = 1e-7) -> float:
    """Effective rank (RankMe, Garrido et al. 2023): `exp(entropy(s / ||s||_1))`, s the
    singular values of the centred embeddings."""
    s = torch.linalg.svdvals(z.float() - z.float().mean(0))
    p = s / (s.sum() + eps) + eps
    return math.exp(-(p * p.log()).sum().item())
