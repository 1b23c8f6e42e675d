"""A third-party polyjepa component, installed by the registry tests as distribution
`polyjepa-extra` with the entry point `tabular.mlp_tokenizer = polyjepa_extra:MLPTokenizer` in the
group `polyjepa.components`.

It is deliberately self-contained (only torch and `polyjepa.types`), as a package outside polyjepa
would be.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyjepa.types import Tokens


class MLPTokenizer(nn.Module):
    """One token per table column: numeric values through a small per-feature MLP, categories
    through per-column embedding tables, plus a learned position per column.

    Numeric feature j: `W2_j gelu(x_j w1_j + b1_j) + b2_j` (width `hidden` inside);
    categorical feature j: `E[offset_j + code]`. Tokens are ordered numeric then categorical.

    Shapes: `{"num": [B, F_num], "cat": [B, F_cat]}` -> `Tokens(x=[B, N, D], pos=[N, D])`.
    """

    kind = "tokenizer"

    def __init__(self, num_numeric: int, cardinalities: list[int], dim: int = 32,
                 hidden: int = 8) -> None:
        super().__init__()
        if num_numeric + len(cardinalities) == 0:
            raise ValueError("mlp_tokenizer: the table has no feature columns")
        if hidden < 1:
            raise ValueError(f"mlp_tokenizer: hidden must be >= 1, got {hidden}")
        self.dim = dim
        self.w1 = nn.Parameter(torch.randn(num_numeric, hidden) * 0.5)
        self.b1 = nn.Parameter(torch.zeros(num_numeric, hidden))
        self.w2 = nn.Parameter(torch.randn(num_numeric, hidden, dim) * hidden**-0.5)
        self.b2 = nn.Parameter(torch.zeros(num_numeric, dim))
        self.cat_embed = nn.Embedding(max(sum(cardinalities), 1), dim)
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("cat_offsets", offsets[: len(cardinalities)], persistent=False)
        self.pos = nn.Parameter(torch.randn(num_numeric + len(cardinalities), dim) * 0.02)

    def forward(self, x: dict[str, Tensor]) -> Tokens:
        h = nn.functional.gelu(x["num"].unsqueeze(-1) * self.w1 + self.b1)  # [B, F_num, H]
        num = torch.einsum("bfh,fhd->bfd", h, self.w2) + self.b2  # [B, F_num, D]
        cat = self.cat_embed(x["cat"] + self.cat_offsets)  # [B, F_cat, D]
        return Tokens(x=torch.cat([num, cat], dim=1), pos=self.pos)
