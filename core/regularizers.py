"""Collapse regularizers composable with any objective.

A regularizer is an `nn.Module` whose `forward(z)` takes embeddings `[B, D]` (objectives pool
token latents first) and returns `(loss, logs)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyjepa.distributed import all_gather_with_grad
from polyjepa.registry import register


def variance_loss(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg variance term: mean over dimensions of `relu(gamma - std_d)`, `z [B, D]`."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """VICReg covariance term: squared off-diagonal covariance summed, divided by D, `z [B, D]`."""
    b, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / (b - 1)  # [D, D]
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


@register("vcreg", kind="regularizer")
class VarianceCovariance(nn.Module):
    """Variance-covariance regularization (VICReg, Bardes et al. 2022; VCReg; VJ-VCR).

    Args:
        std_weight: weight of the hinge on per-dimension std.
        cov_weight: weight of the off-diagonal covariance penalty.
        gamma: target std per dimension.
        gather_distributed: under DDP, compute the statistics over the global batch.
    """

    def __init__(self, std_weight: float = 1.0, cov_weight: float = 0.04, gamma: float = 1.0,
                 gather_distributed: bool = True):
        super().__init__()
        if std_weight < 0 or cov_weight < 0:
            raise ValueError("vcreg: std_weight and cov_weight must be >= 0")
        self.std_weight, self.cov_weight, self.gamma = std_weight, cov_weight, gamma
        self.gather_distributed = gather_distributed

    def forward(self, z: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = all_gather_with_grad(z.float()) if self.gather_distributed else z.float()
        var, cov = variance_loss(z, self.gamma), covariance_loss(z)
        loss = self.std_weight * var + self.cov_weight * cov
        return loss, {"vcreg_std": var.detach(), "vcreg_cov": cov.detach()}
