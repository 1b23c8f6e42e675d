"""Encoders: `Tokens [B, N, D]` -> latents `[B, R + N, D]` (R prefix/register tokens first)."""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from polyjepa.contracts import conform
from polyjepa.errors import ContractError
from polyjepa.pooling import pool
from polyjepa.registry import register
from polyjepa.types import RawInput, Tokens


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """Select tokens per sample: `x [B, N, D]`, `idx [B, K]` -> `[B, K, D]`."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def tokens_per_step(grid: tuple[int, ...] | None) -> int:
    """Tokens per step of a time-major token grid `(T, ...)`: `prod(grid[1:])`, 1 without one."""
    return 1 if grid is None else math.prod(grid[1:])


def init_weights(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) linear weights, zero biases, unit norms (ViT / I-JEPA init)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def transformer_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float,
                       dropout: float = 0.0, attn_drop: float = 0.0,
                       qkv_bias: bool = True) -> nn.ModuleList:
    """`depth` pre-norm timm `Block`s with stochastic depth rising linearly from 0 to `drop_path`."""
    if dim % num_heads:
        raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
    rates = torch.linspace(0, drop_path, depth).tolist()
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, proj_drop=dropout, attn_drop=attn_drop,
              drop_path=rate)
        for rate in rates
    )


@register("transformer", kind="encoder")
class TransformerEncoder(nn.Module):
    """Pre-norm transformer encoder over tokens (timm `Block`s, stochastic depth).

    The positional embedding of `Tokens` is added before context selection, so a context encoder
    that sees a subset of tokens still knows where each one sits. `reg_tokens` learnable tokens
    (T-JEPA's regularization tokens, ViT registers) are prepended after selection and are always
    visible.

    Args:
        dim: token width D (taken from the tokenizer when the recipe omits it).
        depth: number of blocks.
        num_heads: attention heads per block.
        mlp_ratio: hidden width of each block's MLP as a multiple of D.
        drop_path: stochastic-depth rate of the last block (linear from 0).
        dropout: dropout after attention projections and in MLPs.
        attn_drop: dropout on attention weights.
        reg_tokens: number of learnable prefix tokens R.
        pos_every_layer: add the positional embedding before every block (Point-BERT/Point-JEPA),
            not only the first.
        causal_window: attend only to tokens of the same or earlier steps, at most this many
            steps back (1 = each step alone); None attends to everything. A step is a row of the
            token `grid`'s first axis (time): `prod(grid[1:])` consecutive tokens.
        grid: the tokenizer's token grid (from its layout), for `causal_window`.
    """

    def __init__(
        self,
        dim: int,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        dropout: float = 0.0,
        attn_drop: float = 0.0,
        reg_tokens: int = 0,
        pos_every_layer: bool = False,
        qkv_bias: bool = True,
        causal_window: int | None = None,
        grid: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if causal_window is not None:
            if causal_window < 1 or grid is None:
                raise ValueError(f"causal_window={causal_window} needs to be >= 1 and a tokenizer "
                                 "that lays tokens out on a grid with time first")
            if reg_tokens:
                raise ValueError("causal_window: register tokens would carry the future to the "
                                 "past; set reg_tokens to 0")
        self.causal_window = causal_window
        self.per_step = tokens_per_step(grid)
        self.dim = dim
        self.num_prefix_tokens = reg_tokens
        self.pos_every_layer = pos_every_layer
        self.reg = nn.Parameter(torch.zeros(1, reg_tokens, dim)) if reg_tokens else None
        self.blocks = transformer_blocks(dim, depth, num_heads, mlp_ratio, drop_path, dropout,
                                         attn_drop, qkv_bias)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(init_weights)
        if self.reg is not None:
            nn.init.trunc_normal_(self.reg, std=0.02)

    def step_mask(self, tokens: int | Tensor, device: torch.device) -> Tensor:
        """`[B or 1, 1, K, K]` True where query token i may attend to key token j: j's step is
        i's or one of the `causal_window - 1` before. `tokens`: N, or the kept indices `[B, K]`."""
        index = torch.arange(tokens, device=device)[None] if isinstance(tokens, int) else tokens
        step = torch.div(index, self.per_step, rounding_mode="floor")  # [B, K]
        lag = step[:, :, None] - step[:, None, :]  # [B, K, K], query minus key
        own = torch.eye(lag.shape[-1], dtype=torch.bool, device=device)  # never a query without keys
        return (((lag >= 0) & (lag < self.causal_window)) | own)[:, None]

    def forward(self, tokens: Tokens, keep: Tensor | None = None) -> Tensor:
        """Encode `tokens`, or only the tokens at `keep [B, K]`; returns `[B, R + K, D]`."""
        if tokens.x.shape[-1] != self.dim:
            raise ContractError(
                f"model.encoder: the tokenizer returned tokens of width {tokens.x.shape[-1]} but "
                f"the encoder is {self.dim} wide; the tokenizer's `dim` attribute (which the "
                "encoder's width defaults to) must be the width of the tokens it returns, or set "
                "model.encoder.dim to it")
        pos = tokens.batch_pos()  # [B, N, D]
        x = tokens.x + pos
        pad = tokens.pad_mask
        if keep is not None:
            x, pos = gather_tokens(x, keep), gather_tokens(pos, keep)  # [B, K, D]
            pad = None if pad is None else torch.gather(pad, 1, keep)
        r = self.num_prefix_tokens
        if self.causal_window == 1 and keep is None:  # steps alone: a batch of short sequences
            b, n, d = x.shape
            split = (b * n // self.per_step, self.per_step, d)
            mask = None
            if pad is not None:  # a token always sees itself, so no query is left without keys
                own = torch.eye(self.per_step, dtype=torch.bool, device=x.device)
                mask = (~pad.reshape(split[:2]))[:, None, None, :] | own
            out = self._blocks(x.reshape(split), pos.reshape(split), mask, 0)
            return out.reshape(b, n, d)
        if self.reg is not None:
            x = torch.cat([self.reg.expand(x.shape[0], -1, -1), x], dim=1)  # [B, R + K, D]
        attn_mask = None
        if pad is not None:
            valid = torch.cat([pad.new_zeros(pad.shape[0], r), pad], dim=1).logical_not()
            attn_mask = valid[:, None, None, :]  # [B, 1, 1, R + K], True = attend
        if self.causal_window is not None:
            causal = self.step_mask(x.shape[1] if keep is None else keep, x.device)
            own = torch.eye(causal.shape[-1], dtype=torch.bool, device=x.device)
            attn_mask = causal if attn_mask is None else (attn_mask & causal) | own
        return self._blocks(x, pos, attn_mask, r)

    def _blocks(self, x: Tensor, pos: Tensor, attn_mask: Tensor | None, r: int) -> Tensor:
        for i, block in enumerate(self.blocks):
            if self.pos_every_layer and i > 0:
                x = torch.cat([x[:, :r], x[:, r:] + pos], dim=1)
            x = block(x, attn_mask=attn_mask)
        return self.norm(x)


class Backbone(nn.Module):
    """Frontend + tokenizer + encoder: what a target encoder copies and what `encoder.pt` exports.

    `forward(x)` maps a batched raw input to latents `[B, R + N, D]`. The optional `frontend` is
    a fixed (parameter-free) feature transform run on the device first, e.g. audio log-mel;
    objectives that augment features (BYOL-A) call `features` and `encode` separately. The
    tokenizer may be an identity when the encoder reads features directly (a CNN).
    """

    def __init__(self, tokenizer: nn.Module, encoder: nn.Module,
                 frontend: nn.Module | None = None) -> None:
        super().__init__()
        self.frontend = conform(frontend if frontend is not None else nn.Identity(), "frontend",
                                "model.frontend")
        self.tokenizer = tokenizer if isinstance(tokenizer, nn.Identity) else conform(
            tokenizer, "tokenizer", "model.tokenizer")
        self.encoder = conform(encoder, "encoder", "model.encoder")

    @property
    def num_prefix_tokens(self) -> int:
        return self.encoder.num_prefix_tokens

    @property
    def layout(self) -> dict[str, Any]:
        """What the frontend and tokenizer tell maskers about the tokens (e.g. `num_tokens`,
        `grid`: a point-cloud frontend knows its group count); the tokenizer's word wins."""
        tokenized = {} if isinstance(self.tokenizer, nn.Identity) else self.tokenizer.layout
        return {**self.frontend.layout, **tokenized}

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def features(self, x: RawInput) -> RawInput:
        """The frontend's output (the raw input when there is none), without gradients."""
        with torch.no_grad():
            return self.frontend(x)

    def encode(self, features: RawInput, keep: Tensor | None = None) -> Tensor:
        """Latents `[B, R + N, D]` of frontend features (or of the tokens at `keep [B, K]`)."""
        return self.encoder(self.tokenizer(features), keep=keep)

    def forward(self, x: RawInput, keep: Tensor | None = None) -> Tensor:
        return self.encode(self.features(x), keep=keep)

    @property
    def step_tokens(self) -> int:
        """Tokens per step of a time-major token grid (1 without a grid)."""
        return tokens_per_step(self.layout.get("grid"))

    def embed(self, x: RawInput, pooling: str) -> Tensor:
        """One pooled vector per sample `[B, F]` (padding tokens left out, see `pool`)."""
        tokens = self.tokenizer(self.features(x))
        if not isinstance(tokens, Tokens):  # an encoder that reads features directly
            return pool(self.encoder(tokens), pooling, self.num_prefix_tokens)
        return pool(self.encoder(tokens), pooling, self.num_prefix_tokens, tokens.pad_mask,
                    self.step_tokens)
