"""A third-party objective, installed by the contract tests as distribution `polyjepa-objective`
with the entry point `tabular.mean_latent = polyjepa_objective:MeanLatentPrediction` in the group
`polyjepa.components`, and a class that breaks the objective contract (`tabular.not_an_objective`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyjepa.contracts import Objective
from polyjepa.ema import ema_update, make_target
from polyjepa.types import Batch


class MeanLatentPrediction(Objective):
    """Predict the EMA target's mean latent over every token `[B, D]` from the online encoder's
    mean latent over the context tokens, through a head the recipe names as `model.predictor`
    (built by `parts` with `out_dim` = the backbone's width, passed here as `head`)."""

    kind = "objective"
    num_views = 0

    @classmethod
    def parts(cls, parts: Any) -> dict[str, Any]:
        return {"head": parts.build("predictor", required=True, out_dim=parts.backbone.dim)}

    def __init__(self, backbone: nn.Module, head: nn.Module,
                 regularizers: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.online, self.head = backbone, head
        self.target = make_target(backbone)

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.masks is not None
        features = self.online.features(batch.x)
        z = self.online.encoder(self.online.tokenizer(features), keep=batch.masks.context)
        with torch.no_grad():
            target = self.target.encode(features).mean(1)  # [B, D]
        self.monitor_embeddings = target.float()
        loss = F.mse_loss(self.head(z.mean(1)), target)
        return loss, {"loss_mean_latent": loss.detach()}

    def update_target(self, momentum: float) -> None:
        ema_update(self.target, self.online, momentum)


class NotAnObjective(nn.Module):
    """Has a forward, but does not subclass `polyjepa.contracts.Objective`."""

    kind = "objective"

    def __init__(self, backbone: nn.Module, regularizers: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.online = backbone

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        raise AssertionError("never called: the build rejects this class")
