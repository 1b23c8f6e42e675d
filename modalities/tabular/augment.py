"""Views of table rows for view-based objectives (BYOL, LeJEPA)."""

from __future__ import annotations

import torch
from torch import Tensor


class FeatureCorruption:
    """SCARF's corruption (Bahri et al. 2022): each feature of a row is, with probability
    `rate`, replaced by the same feature of another row of the batch (a draw from the batch's
    empirical marginal), numeric and categorical alike. Runs in the collate on batched rows
    `{"num": [B, F_num], "cat": [B, F_cat]}`; every draw comes from `generator`.

    Args:
        rate: the share of features replaced (SCARF: 0.6).
    """

    kind = "augmentation"

    def __init__(self, rate: float = 0.6) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"tabular.corrupt: rate must lie in [0, 1], got {rate}")
        self.rate = rate

    def __call__(self, x: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        out = {}
        for key, values in x.items():  # "num" [B, F_num] and "cat" [B, F_cat]
            b, f = values.shape
            replace = torch.rand(b, f, generator=generator) < self.rate
            donors = torch.randint(0, b, (b, f), generator=generator)
            drawn = torch.gather(values, 0, donors)  # column j of a random row
            out[key] = torch.where(replace, drawn, values)
        return out
