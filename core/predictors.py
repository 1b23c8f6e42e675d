"""Predictors: JEPA's narrow transformer over context latents + mask tokens; BYOL's MLP head and
DirectPred's linear map set from its inputs' correlation; VJ-VCR's and TS-JEPA's MLPs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyjepa.distributed import all_reduce_mean_with_grad
from polyjepa.encoders import init_weights, transformer_blocks
from polyjepa.registry import register


@register("jepa", kind="predictor")
class JEPAPredictor(nn.Module):
    """I-JEPA predictor: predicts target latents from context latents and target positions.

    Context latents are projected to the predictor width and tagged with their positions; each
    target set gets one learned mask token per position, tagged the same way; a narrow
    transformer attends over `[context ; mask tokens]` and the mask-token outputs are projected
    back to the encoder width. Positions are the tokenizer's positional embedding (width D)
    through a learned linear map to the predictor width, so any tokenizer's positions work.

    Args:
        in_dim: encoder width D (from the encoder when the recipe omits it).
        dim: predictor width.
        depth, num_heads, mlp_ratio, drop_path: as for the encoder.
        num_prefix_tokens: register tokens at the front of the context latents (no position).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int = 384,
        depth: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        dropout: float = 0.0,
        num_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.embed = nn.Linear(in_dim, dim)
        self.pos_proj = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = transformer_blocks(dim, depth, num_heads, mlp_ratio, drop_path, dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, in_dim)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: Tensor, context_pos: Tensor, target_pos: Tensor) -> Tensor:
        """Predict target latents.

        Args:
            context: context-encoder output `[B, R + Nc, D]`.
            context_pos: positional embeddings of the context tokens `[B, Nc, D]`.
            target_pos: positional embeddings of the targets `[B, M, Nt, D]`.

        Returns:
            predicted target latents `[B, M, Nt, D]`.
        """
        b, m, nt, d = target_pos.shape
        r = self.num_prefix_tokens
        x = self.embed(context)  # [B, R + Nc, Dp]
        x = torch.cat([x[:, :r], x[:, r:] + self.pos_proj(context_pos)], dim=1)
        x = x.repeat_interleave(m, dim=0)  # [B * M, R + Nc, Dp]
        queries = self.mask_token + self.pos_proj(target_pos.reshape(b * m, nt, d))  # [B*M, Nt, Dp]
        x = torch.cat([x, queries], dim=1)
        for block in self.blocks:
            x = block(x)
        out = self.head(self.norm(x[:, -nt:]))  # [B * M, Nt, D]
        return out.view(b, m, nt, d)


@register("mlp", kind="predictor")
class MLPHead(nn.Module):
    """BYOL projector / predictor: Linear -> BatchNorm -> ReLU -> Linear, `[B, in] -> [B, out]`."""

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register("directpred", kind="predictor")
class DirectPred(nn.Module):
    """A linear predictor that is set, not trained (DirectPred, Tian, Chen & Ganguli 2021).

    It keeps a running estimate of the (uncentred) correlation of its inputs,
    `F <- rho F + (1 - rho) F_step` (the first step sets `F = F_step`), `F_step` the mean of
    `f f^T` over the step's inputs (every view, every rank), and after every `freq` steps sets
    its matrix to `W = Q diag(sqrt(s / s_max) + eps) Q^T` from the eigendecomposition
    `F = Q diag(s) Q^T`: W shares F's eigenvectors, and its eigenvalues grow with the square
    root of F's. As in the authors' code, W is set between optimizer steps (`set_step`, called
    by the trainer before each step: `polyjepa.contracts.StepAware`), so the views of one step
    share it. No bias, no gradient. `[B, in_dim] -> [B, in_dim]`.

    Args:
        in_dim: width of its input (BYOL: the projection's).
        rho: the running estimate's decay (the authors' DirectPred runs: 0.3).
        eps: added to the normalised eigenvalues' square roots (0.01).
        freq: steps between two settings of W (1: every step).
    """

    def __init__(self, in_dim: int, rho: float = 0.3, eps: float = 0.01, freq: int = 1) -> None:
        super().__init__()
        if not 0 <= rho < 1 or eps < 0 or freq < 1:
            raise ValueError(f"directpred: need 0 <= rho < 1, eps >= 0 and freq >= 1, got rho={rho}, "
                             f"eps={eps}, freq={freq}")
        self.out_dim = in_dim
        self.rho, self.eps, self.freq = rho, eps, freq
        self.register_buffer("corr", torch.zeros(in_dim, in_dim))
        self.register_buffer("weight", torch.eye(in_dim))
        self.register_buffer("folded", torch.zeros((), dtype=torch.long))  # steps folded into F
        self.register_buffer("pending", torch.zeros(in_dim, in_dim))  # this step's sum of F_b
        self.register_buffer("pending_calls", torch.zeros((), dtype=torch.long))

    def forward(self, f: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                g = f.detach().float()
                self.pending += all_reduce_mean_with_grad(g.T @ g / len(g))
                self.pending_calls += 1
        return f @ self.weight.to(f.dtype)

    @torch.no_grad()
    def set_step(self, step: int) -> None:
        """Fold the inputs seen since the last call into F, and set W when due."""
        calls = int(self.pending_calls)
        if calls == 0:
            return
        batch = self.pending / calls
        first = int(self.folded) == 0
        self.corr.copy_(batch if first else self.rho * self.corr + (1 - self.rho) * batch)
        self.pending.zero_()
        self.pending_calls.zero_()
        self.folded += 1
        if first or int(self.folded) % self.freq == 0:
            s, q = torch.linalg.eigh(self.corr.double())
            p = (s.clamp_min(0) / s.max().clamp_min(1e-12)).sqrt() + self.eps
            self.weight.copy_((q * p) @ q.T)


@register("sequence_mlp", kind="predictor")
class SequenceMLP(nn.Module):
    """Predict `num_target` latents from the concatenation of `num_context` context latents
    with an MLP (VJ-VCR's Moving MNIST predictor: two hidden layers, all target frames at once).

    A latent variable `z` lets it predict futures the past does not determine, in one of two
    forms: with `num_latents = K > 1` the last layer has K heads, one per value of a discrete `z`
    (VJ-VCR's one-hot latent): the objective scores each and keeps the best, so different heads
    can take different futures; with `latent_dim = Z > 0` a continuous `z [B, Z]` (VJ-VCR's sparse
    latent, inferred by the objective per sample with `polyjepa.latents.fista`; `z = None` is the
    prior, all zeros) enters the first layer through a dictionary `W_z [hidden, Z]` whose columns
    are kept at unit norm, as in sparse coding: without it the layer could grow `W_z` and make any
    `z` small, and an L1 penalty on `z` would limit nothing.

    Args:
        in_dim: latent width D.
        num_context, num_target: Nc context and Nt target latents (fixed by the masker).
        hidden: width of the two hidden layers.
        num_latents: K heads.
        latent_dim: Z, the width of a continuous latent (0: none).

    `forward(context [B, Nc, D], z [B, Z] | None) -> [B, K, Nt, D]`.
    """

    def __init__(self, in_dim: int, num_context: int, num_target: int, hidden: int = 512,
                 num_latents: int = 1, latent_dim: int = 0) -> None:
        super().__init__()
        if num_latents < 1 or latent_dim < 0:
            raise ValueError(f"num_latents must be >= 1 and latent_dim >= 0, got {num_latents}, "
                             f"{latent_dim}")
        if num_latents > 1 and latent_dim:
            raise ValueError("a discrete latent (num_latents > 1) or a continuous one "
                             "(latent_dim > 0), not both")
        self.num_target, self.num_latents, self.in_dim = num_target, num_latents, in_dim
        self.latent_dim = latent_dim
        self.body = nn.Sequential(nn.Linear(num_context * in_dim, hidden),
                                  nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                                  nn.ReLU(inplace=True))
        self.latent_atoms = nn.Parameter(torch.randn(hidden, latent_dim)) if latent_dim else None
        self.heads = nn.Linear(hidden, num_latents * num_target * in_dim)

    def latent_dictionary(self) -> Tensor:
        """`W_z [hidden, Z]`, each column (one coordinate of `z`) of unit norm."""
        assert self.latent_atoms is not None, "this predictor has no continuous latent"
        return nn.functional.normalize(self.latent_atoms, dim=0)

    def forward(self, context: Tensor, z: Tensor | None = None) -> Tensor:
        b = context.shape[0]
        hidden = self.body[0](context.flatten(1))  # [B, hidden]
        if z is not None:
            if self.latent_atoms is None:
                raise ValueError("this predictor has no continuous latent (latent_dim = 0)")
            hidden = hidden + z.to(hidden.dtype) @ self.latent_dictionary().to(hidden.dtype).T
        out = self.heads(self.body[1:](hidden))
        return out.view(b, self.num_latents, self.num_target, self.in_dim)


@register("rollout_mlp", kind="predictor")
class RolloutMLP(nn.Module):
    """One step of a latent dynamics model: `z_{t+1} = z_t + MLP([z_t ; a_{t+1}])` (TS-JEPA's
    predictor, an MLP over the current embedding and the control action; residual here, so
    that an untrained predictor starts from "nothing changes").

    Args:
        in_dim: latent width D.
        action_dim: width F of a step's actions (0: no actions).
        hidden: width of the hidden layers (TS-JEPA: 1024).
        depth: hidden layers.
        residual: predict the change of `z` rather than `z` itself.

    `forward(z [B, S, D], actions [B, S, F] | None) -> [B, S, D]`.
    """

    def __init__(self, in_dim: int, action_dim: int = 0, hidden: int = 1024, depth: int = 1,
                 residual: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim + action_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, in_dim))
        self.action_dim, self.residual = action_dim, residual

    def forward(self, z: Tensor, actions: Tensor | None = None) -> Tensor:
        if self.action_dim:
            if actions is None:
                raise ValueError(f"this predictor expects {self.action_dim} action values per step")
            z_in = torch.cat([z, actions.to(z.dtype)], dim=-1)
        else:
            z_in = z
        out = self.net(z_in)
        return z + out if self.residual else out
