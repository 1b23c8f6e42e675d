"""One token per feature (FT-Transformer / T-JEPA feature tokenizer)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyjepa.posembed import sincos_1d
from polyjepa.types import Tokens


class FeatureTokenizer(nn.Module):
    """Embeds each column of a table row as a token.

    Numeric feature j: `x_j * W_j + b_j`; categorical feature j: `E_j[code] + b_j` (code 0 is the
    missing/unseen category). The per-feature bias `b_j` identifies the feature; `Tokens.pos`
    carries the feature index as a fixed sin-cos (or learned) embedding that the encoder adds and
    the JEPA predictor uses to place its mask tokens. Tokens are ordered numeric then categorical.

    Args:
        num_numeric: F_num, numeric columns.
        cardinalities: categories per categorical column (including the missing slot).
        dim: token width D.
        pos: `sincos` or `learned` feature-position embedding.

    Shapes: `{"num": [B, F_num], "cat": [B, F_cat]}` -> `Tokens(x=[B, N, D], pos=[N, D])`,
    N = F_num + F_cat.
    """

    kind = "tokenizer"

    def __init__(self, num_numeric: int, cardinalities: list[int], dim: int = 64,
                 pos: str = "sincos") -> None:
        super().__init__()
        if num_numeric + len(cardinalities) == 0:
            raise ValueError("the table has no feature columns")
        self.dim = dim
        self.num_weight = nn.Parameter(torch.empty(num_numeric, dim))
        self.num_bias = nn.Parameter(torch.zeros(num_numeric, dim))
        self.cat_embed = nn.Embedding(max(sum(cardinalities), 1), dim)
        self.cat_bias = nn.Parameter(torch.zeros(len(cardinalities), dim))
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("cat_offsets", offsets[: len(cardinalities)], persistent=False)
        n = num_numeric + len(cardinalities)
        if pos == "sincos":
            self.register_buffer("pos", sincos_1d(n, dim), persistent=False)
        elif pos == "learned":
            self.pos = nn.Parameter(torch.zeros(n, dim))
            nn.init.trunc_normal_(self.pos, std=0.02)
        else:
            raise ValueError(f"pos must be 'sincos' or 'learned', got '{pos}'")
        nn.init.trunc_normal_(self.num_weight, std=0.02)
        nn.init.trunc_normal_(self.cat_embed.weight, std=0.02)

    def forward(self, x: dict[str, Tensor]) -> Tokens:
        num = x["num"].unsqueeze(-1) * self.num_weight + self.num_bias  # [B, F_num, D]
        cat = self.cat_embed(x["cat"] + self.cat_offsets) + self.cat_bias  # [B, F_cat, D]
        return Tokens(x=torch.cat([num, cat], dim=1), pos=self.pos)
