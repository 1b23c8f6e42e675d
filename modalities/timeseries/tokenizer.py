"""Patch tokens of series (PatchTST / TS-JEPA style) and reversible instance normalisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyjepa.posembed import sincos_1d
from polyjepa.types import Tokens

CHANNEL_MODES = ("independent", "mixing")
EPS = 1e-5


def valid_mask(length: Tensor, steps: int) -> Tensor:
    """`[B, steps]` bool, True on the first `length[b]` steps."""
    return torch.arange(steps, device=length.device)[None] < length[:, None]


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022): each channel of each series to zero
    mean and unit std over its valid steps, with an optional learnable affine; `inverse` maps
    values predicted in that space (a forecast) back to the input's scale.

    Args:
        channels: C.
        affine: learn a per-channel scale and shift.
    """

    def __init__(self, channels: int, affine: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, values: Tensor, length: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """`values [B, C, T]` -> normalised values (padding stays zero) and `(mean, std)`
        `[B, C, 1]` for `inverse`."""
        valid = valid_mask(length, values.shape[-1])[:, None].to(values.dtype)  # [B, 1, T]
        count = valid.sum(-1, keepdim=True).clamp_min(1)
        mean = (values * valid).sum(-1, keepdim=True) / count
        std = ((((values - mean) ** 2) * valid).sum(-1, keepdim=True) / count + EPS).sqrt()
        out = (values - mean) / std
        if self.weight is not None and self.bias is not None:
            out = out * self.weight[:, None] + self.bias[:, None]
        return out * valid, (mean, std)

    def inverse(self, values: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """Normalised `[B, C, H]` -> the input's scale."""
        mean, std = stats
        if self.weight is not None and self.bias is not None:
            values = (values - self.bias[:, None]) / self.weight[:, None]
        return values * std + mean


class PatchTokenizer(nn.Module):
    """Series `{"values": [B, C, T], "length": [B]}` -> patch tokens.

    Patches of `patch` steps every `stride` steps (non-overlapping when equal), the series
    zero-padded at the end so that the last steps fall in a patch too. `independent`
    channels (PatchTST): one token per channel and patch, the same linear value embedding for
    every channel plus a learned channel embedding, ordered time-major on the grid `(N, C)`;
    `mixing`: one token per patch embedding all channels' values. Positions: fixed sin-cos over
    patch index. A patch is padding when it starts at or beyond the series' length; the
    tokens' `pad_mask` tells the encoder and the pooling.

    Args:
        channels, length: C and T of the aligned series (from the data's meta).
        dim: token width D.
        patch, stride: patch length P and hop (default P).
        num_patches: instead of `patch`, cut series of T steps into about this many
            non-overlapping patches: P = ceil(T / num_patches), which makes `num_patches` of them,
            or fewer when fewer already cover T (TS-JEPA uses 10 per series).
        channel_mode: `independent` | `mixing`.
        revin: instance-normalise each series first (`RevIN`, without affine).
        num_actions: A action channels of the data (from its meta); `step_actions` patches
            them like the values, for action-conditioned predictors.
        positions: add the sin-cos patch positions (off for stationary processes whose
            windows mean the same wherever they fall, e.g. a controlled cart-pole).

    Inputs shorter than `length` (e.g. one window at a time, when controlling) take the first
    positions; longer than the patches for `length` cover is an error.
    """

    kind = "tokenizer"

    def __init__(self, channels: int, length: int, dim: int = 128, patch: int | None = 16,
                 stride: int | None = None, num_patches: int | None = None,
                 channel_mode: str = "independent", revin: bool = False,
                 num_actions: int = 0, positions: bool = True) -> None:
        super().__init__()
        if num_patches is not None:
            if stride is not None:
                raise ValueError("num_patches makes non-overlapping patches: leave stride unset")
            if not 1 <= num_patches <= length:
                raise ValueError(f"num_patches={num_patches} must lie in [1, {length}] (the "
                                 "series length)")
            patch, stride = -(-length // num_patches), None
        if patch is None or patch < 1:
            raise ValueError("set model.tokenizer.patch (>= 1) or num_patches")
        stride = stride or patch
        if channel_mode not in CHANNEL_MODES:
            raise ValueError(f"channel_mode '{channel_mode}' is not one of {', '.join(CHANNEL_MODES)}")
        if length < patch:
            raise ValueError(f"series of {length} steps are shorter than one patch of {patch}; "
                             "lower model.tokenizer.patch or raise data.length")
        steps = -(-(length - patch) // stride) + 1  # ceil: the last steps get a patch too
        self.padded = (steps - 1) * stride + patch
        per_step = channels if channel_mode == "independent" else 1
        self.dim, self.patch, self.stride, self.steps = dim, patch, stride, steps
        self.per_step, self.channel_mode = per_step, channel_mode
        self.value = nn.Linear(patch * (1 if channel_mode == "independent" else channels), dim)
        self.channel = nn.Parameter(torch.empty(channels, dim)) if per_step > 1 else None
        if self.channel is not None:
            nn.init.trunc_normal_(self.channel, std=0.02)
        self.revin = RevIN(channels) if revin else None
        self.uses_future = revin  # RevIN's statistics span the whole series (contracts.Tokenizer)
        pos = sincos_1d(steps, dim).repeat_interleave(per_step, dim=0)  # [N * C', D]
        pos = pos if positions else torch.zeros_like(pos)
        self.register_buffer("pos", pos, persistent=False)
        self.layout = {"num_tokens": steps * per_step, "grid": (steps, per_step),
                       "patch": patch, "stride": stride, "action_dim": num_actions * patch}

    def _tail(self, t: int) -> int:
        """Zeros to append to `t` steps so that patches cover them all."""
        patches = -(-max(t - self.patch, 0) // self.stride) + 1
        return (patches - 1) * self.stride + self.patch - t

    def forward(self, x: dict[str, Tensor]) -> Tokens:
        values, length = x["values"], x["length"]
        if self.revin is not None:
            values, _ = self.revin(values, length)
        else:  # what lies beyond a series' length never reaches a token
            values = values * valid_mask(length, values.shape[-1])[:, None].to(values.dtype)
        t = values.shape[-1]
        if t > self.padded:
            raise ValueError(f"series of {t} steps are longer than the {self.padded} this "
                             "tokenizer was built for")
        values = nn.functional.pad(values, (0, self._tail(t)))
        patches = values.unfold(-1, self.patch, self.stride)  # [B, C, N, P]
        b, c, n, p = patches.shape
        if self.channel_mode == "independent":
            h = self.value(patches)  # [B, C, N, D]
            if self.channel is not None:
                h = h + self.channel[None, :, None]
            h = h.transpose(1, 2).reshape(b, n * c, self.dim)  # time-major
        else:
            h = self.value(patches.transpose(1, 2).reshape(b, n, c * p))  # [B, N, D]
        starts = torch.arange(n, device=length.device) * self.stride
        pad = (starts[None] >= length[:, None]).repeat_interleave(self.per_step, dim=1)
        # no mask when nothing is padded (the fast attention path); a graph being exported keeps
        # it, since whether a batch is padded is a property of its data, not of its shapes
        keep = torch.compiler.is_exporting() or bool(pad.any())
        return Tokens(x=h, pos=self.pos[: n * self.per_step], pad_mask=pad if keep else None)

    def step_actions(self, x: dict[str, Tensor]) -> Tensor | None:
        """The actions that lead into each patch `[B, N, A * P]`, or None without actions.

        Patch `t` covers steps `[t S, t S + P)`; the observation at step `k` follows the action
        taken at step `k - 1`, so patch `t`'s actions are those of steps `[t S - 1, t S + P - 1)`
        (zero before the first step).
        """
        actions = x.get("actions")
        if actions is None:
            return None
        shifted = nn.functional.pad(actions[..., :-1], (1, self._tail(actions.shape[-1])))
        patches = shifted.unfold(-1, self.patch, self.stride)  # [B, A, N, P]
        return patches.transpose(1, 2).flatten(2)
