"""Self-supervised objectives: subclasses of `polyjepa.contracts.Objective`, `forward(batch) ->
(loss, logs)`, each building the heads it needs in its `parts` hook.

`logs` holds detached scalar tensors (no device sync on the hot path). After each optimizer step
the trainer calls `update_target(momentum)`. `monitor_embeddings` holds the last batch's pooled
target embeddings `[B, D]` for the collapse monitors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyjepa.contracts import LatentPredictor, Objective, SizedMasker
from polyjepa.ema import ema_update, make_target
from polyjepa.encoders import Backbone, gather_tokens
from polyjepa.errors import ConfigError
from polyjepa.latents import fista
from polyjepa.pooling import pool, pooled_dim
from polyjepa.registry import register
from polyjepa.regularizers import SIGReg
from polyjepa.types import Batch, RawInput, Tokens

if TYPE_CHECKING:
    from polyjepa.build import Parts

LOSSES: dict[str, Callable[..., Tensor]] = {"mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss}


def _loss_fn(name: str, beta: float = 1.0) -> Callable[[Tensor, Tensor], Tensor]:
    if name not in LOSSES:
        raise ValueError(f"objective.loss: unknown loss '{name}'; choose from {', '.join(LOSSES)}")
    if name == "smooth_l1":
        return functools.partial(F.smooth_l1_loss, beta=beta)
    return LOSSES[name]


def _regularize(regularizers: nn.ModuleList, z: Tensor, loss: Tensor, logs: dict) -> Tensor:
    for reg in regularizers:
        reg_loss, reg_logs = reg(z)
        loss = loss + reg_loss
        logs.update(reg_logs)
    return loss


@register("jepa", kind="objective")
class JEPA(Objective):
    """Joint-embedding predictive architecture (I-JEPA, Assran et al. 2023).

    The context encoder sees only the context tokens; the predictor fills mask tokens at each
    target set's positions; the EMA target encoder encodes all tokens without gradients, and the
    loss compares predictions with the target latents at the target positions.

    Args:
        backbone: online tokenizer + encoder.
        predictor: maps `(context latents, context pos, target pos)` to `[B, M, Nt, D]`.
        loss: `mse` | `smooth_l1` | `l1`, averaged over all elements.
        beta: the smooth-L1 threshold between its quadratic and linear parts (Point-JEPA: 2).
        normalize_targets: layer-norm target latents (no affine) before the loss (I-JEPA).
        regularizers: applied to the mean-pooled context latents `[B, D]`.
        target_tokenizer: "ema" (the target encoder tokenizes with its own EMA copy, I-JEPA) or
            "online" (the target encoder reads the online tokenizer's tokens, detached, so the
            tokenizer runs once per step: Point-JEPA, whose teacher is the transformer alone).
        export: which encoder `encoder.pt` holds: "target" (I-JEPA evaluates the EMA target) or
            "online" (Point-JEPA evaluates the student).
    """

    num_views = 0  # collate-side augmentations transform the input itself

    @classmethod
    def parts(cls, parts: Parts) -> dict[str, Any]:
        """The predictor, told how many prefix (register) tokens lead the context latents."""
        return {"predictor": parts.build("predictor", required=True,
                                         num_prefix_tokens=parts.backbone.num_prefix_tokens)}

    def __init__(
        self,
        backbone: Backbone,
        predictor: nn.Module,
        loss: str = "smooth_l1",
        beta: float = 1.0,
        normalize_targets: bool = True,
        regularizers: list[nn.Module] | None = None,
        target_tokenizer: str = "ema",
        export: str = "target",
    ) -> None:
        super().__init__()
        if target_tokenizer not in ("ema", "online"):
            raise ValueError(f"objective.target_tokenizer: '{target_tokenizer}' is not ema or online")
        if export not in ("target", "online"):
            raise ValueError(f"objective.export: '{export}' is not target or online")
        self.loss_fn = _loss_fn(loss, beta)
        self.target_tokenizer, self.export = target_tokenizer, export
        self.normalize_targets = normalize_targets
        self.online = backbone
        self.target = make_target(backbone)
        self.predictor = predictor
        self.regularizers = nn.ModuleList(regularizers or [])
        self.monitor_embeddings: Tensor | None = None

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        masks = batch.masks
        if masks is None:
            raise ValueError("the JEPA objective needs masks: give the recipe a `masker`")
        b, m, nt = masks.target.shape
        r = self.online.num_prefix_tokens
        target_idx = masks.target.reshape(b, m * nt)  # [B, M * Nt]
        features = self.online.features(batch.x)  # the frontend is fixed: compute it once
        tokens = self.online.tokenizer(features)
        with torch.no_grad():
            if self.target_tokenizer == "online":
                h = self.target.encoder(Tokens(tokens.x.detach(), tokens.pos.detach(),
                                               tokens.pad_mask))
            else:
                h = self.target.encode(features)  # [B, R + N, D]
            self.monitor_embeddings = h.mean(1).float()
            h = h[:, r:]
            if self.normalize_targets:
                h = F.layer_norm(h, h.shape[-1:])
            targets = gather_tokens(h, target_idx).view(b, m, nt, -1)  # [B, M, Nt, D]
        z = self.online.encoder(tokens, keep=masks.context)  # [B, R + Nc, D]
        pos = tokens.batch_pos()  # [B, N, D]
        context_pos = gather_tokens(pos, masks.context)
        target_pos = gather_tokens(pos, target_idx).view(b, m, nt, -1)
        pred = self.predictor(z, context_pos, target_pos)  # [B, M, Nt, D]
        loss = self.loss_fn(pred.float(), targets.float())
        logs = {"loss_pred": loss.detach()}
        loss = _regularize(self.regularizers, z.mean(1).float(), loss, logs)
        return loss, logs

    def train(self, mode: bool = True) -> JEPA:
        """Train or eval mode for everything but the target encoder, which always runs in eval
        mode: targets are deterministic (no dropout or drop-path; BatchNorm uses its EMA'd
        statistics), as Point-JEPA's teacher. I-JEPA's and A-JEPA's have no such layers."""
        super().train(mode)
        self.target.eval()
        return self

    def update_target(self, momentum: float) -> None:
        ema_update(self.target, self.online, momentum)

    def export_backbone(self) -> Backbone:
        """The encoder to export (`export`): the EMA target, with the online tokenizer when the
        target reads the online tokens, or the online encoder."""
        if self.export == "online":
            return self.online
        if self.target_tokenizer == "online":
            return Backbone(self.online.tokenizer, self.target.encoder, self.online.frontend)
        return self.target


def _pooled_width(parts: Parts) -> int:
    """Width of the backbone's embedding pooled as `objective.pooling` (default mean) says."""
    pooling = parts.recipe.cfg.objective.get("pooling", "mean")
    try:
        return pooled_dim(parts.backbone, pooling, {**parts.meta, **parts.backbone.layout})
    except ValueError as exc:
        raise ConfigError(f"{parts.recipe.source}: objective.pooling: {exc}") from None


def concat_inputs(inputs: list[RawInput]) -> RawInput:
    """Raw inputs of equal shape stacked along the batch: `V x [B, ...] -> [V * B, ...]`."""
    if isinstance(inputs[0], dict):
        return {k: torch.cat([x[k] for x in inputs]) for k in inputs[0]}  # type: ignore[index]
    return torch.cat(inputs)  # type: ignore[arg-type]


def _input_shape(x: RawInput) -> Any:
    """A raw input's shape, or its fields' shapes for a dict input."""
    if isinstance(x, dict):
        return {k: tuple(t.shape) for k, t in x.items()}
    return tuple(x.shape)


def device_views(backbone: Backbone, augmentations: nn.ModuleList, batch: Batch, count: int,
                 generator: torch.Generator | None = None) -> Any:
    """`count` views of every sample as frontend features, stacked `[count B, ...]`: the device-side
    `augmentations` applied in order to `count` copies of the batch's features at once (one call
    each, so batch statistics span every view), parameters drawn from `generator` (default: one
    seeded with the batch seed)."""
    views = concat_inputs([backbone.features(batch.x)] * count)
    if generator is None:
        generator = torch.Generator().manual_seed(batch.seed)
    with torch.no_grad():
        for augment in augmentations:
            views = augment(views, generator)
    return views


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's normalised MSE `2 - 2 cos(p, z)`, averaged over the batch; `p, z [B, D]`."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


@register("byol", kind="objective")
class BYOL(Objective):
    """Bootstrap Your Own Latent (Grill et al. 2020): two views, symmetric normalised MSE.

    online: backbone -> pool -> projector -> predictor; target: EMA(backbone, projector).

    Args:
        backbone: online tokenizer + encoder.
        projector: MLP `[B, D_pool] -> [B, P]`.
        predictor: MLP `[B, P] -> [B, P]`.
        pooling: how token latents become one vector (see `polyjepa.pooling`).
        regularizers: applied to the pooled online embeddings of each view.
        augmentations: device-side augmentations (`on_device`), applied in order to the frontend
            features of both views at once (`[2B, ...]`, one call per batch; e.g. BYOL-A's chain,
            whose batch statistics span both views). Without them the collate's views are used.
    """

    def __init__(
        self,
        backbone: Backbone,
        projector: nn.Module,
        predictor: nn.Module,
        pooling: str = "mean",
        regularizers: list[nn.Module] | None = None,
        augmentations: list[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.augmentations = nn.ModuleList(augmentations or [])
        self.online = backbone
        self.projector = projector
        self.predictor = predictor
        self.target = make_target(backbone)
        self.target_projector = make_target(projector)
        self.regularizers = nn.ModuleList(regularizers or [])
        self.monitor_embeddings: Tensor | None = None

    @classmethod
    def parts(cls, parts: Parts) -> dict[str, Any]:
        """The projector, sized by the pooled embedding, and the predictor, by the projection."""
        projector = parts.build("projector", required=True, in_dim=_pooled_width(parts))
        return {"projector": projector,
                "predictor": parts.build("predictor", required=True, in_dim=projector.out_dim)}

    def _embed(self, backbone: Backbone, features: Any) -> Tensor:
        return pool(backbone.encode(features), self.pooling, backbone.num_prefix_tokens)

    def make_views(self, batch: Batch) -> tuple[Any, Any]:
        """Two views as frontend features: the device-side augmentations applied to `[2B, ...]`
        with parameters from the batch seed, or the collate's views through the frontend."""
        if len(self.augmentations):
            return device_views(self.online, self.augmentations, batch, 2).chunk(2)
        if len(batch.views) != 2:
            raise ValueError("the BYOL objective needs two augmented views per sample: give the "
                             "recipe augmentations")
        return self.online.features(batch.views[0]), self.online.features(batch.views[1])

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        v1, v2 = self.make_views(batch)
        y1, y2 = self._embed(self.online, v1), self._embed(self.online, v2)  # [B, D]
        p1, p2 = self.predictor(self.projector(y1)), self.predictor(self.projector(y2))
        with torch.no_grad():
            t1, t2 = self._embed(self.target, v1), self._embed(self.target, v2)
            self.monitor_embeddings = t1.float()
            z1, z2 = self.target_projector(t1), self.target_projector(t2)
        loss = byol_loss(p1.float(), z2.float()) + byol_loss(p2.float(), z1.float())
        logs = {"loss_byol": loss.detach()}
        for y in (y1, y2):
            loss = _regularize(self.regularizers, y.float(), loss, logs)
        return loss, logs

    def update_target(self, momentum: float) -> None:
        ema_update(self.target, self.online, momentum)
        ema_update(self.target_projector, self.projector, momentum)


@register("predictive_vcr", kind="objective")
class PredictiveVCR(Objective):
    """Predict the representations of a sample's target tokens (the future frames) from its
    context tokens (the past), with variance-covariance regularization instead of an EMA target
    (VJ-VCR, Drozdov et al. 2024). One encoder, one pass, gradients through both sides.

    With `target="pixels"` it is the generative baseline of the same framework: a decoder maps
    each predicted latent to its frame, and the loss is the pixel MSE (needs one token per
    frame, so that target token `i` is frame `i`); the regularizers then see only the context.

    A predictor with several heads (a discrete latent variable `z`) is trained on the head of
    lowest energy per sample (`z* = argmin_z E`), which lets heads specialise to futures the past
    does not determine. Pure winner-takes-all leaves heads that lose at initialisation dead
    forever, so the losers get a small share `latent_relax` of the loss (relaxed
    winner-takes-all, Rupprecht et al. 2017); `loss_pred` reports the winners' energy and
    `latent_top_share` the share of the batch the busiest head wins. A predictor with a
    continuous latent (`LatentPredictor`, e.g. `sequence_mlp` with `latent_dim`) gets, per
    sample, the sparse `z*` that best explains the target (`infer_latent`: FISTA on the energy
    plus `latent_l1 ||z||_1`), and is trained on its prediction with that `z*` held fixed;
    `latent_nonzero` logs the share of active coordinates.

    Args:
        backbone: the encoder (`[B, N, D]` latents).
        predictor: `context [B, Nc, D] -> [B, K, Nt, D]` (e.g. `sequence_mlp`).
        regularizers: applied to each token position's latents over the batch (`[B, D]`, one
            call per position, averaged): VJ-VCR regularizes every frame's representation.
        decoder: `[..., D] -> [..., C, H, W]`, for `target="pixels"`.
        target: "latent" (VJ-VCR) or "pixels" (the generative baseline).
        latent_relax: weight shared by the losing heads (K > 1).
        latent_l1, latent_steps, latent_step_size: with a continuous latent
            (`model.predictor.latent_dim` > 0), its L1 weight λ and the FISTA steps and step size
            that infer it per sample (`infer_latent`).
    """

    num_views = 0

    @classmethod
    def parts(cls, parts: Parts) -> dict[str, Any]:
        """The predictor, sized by the masker's context and target counts, and the decoder if
        the recipe has one."""
        sizes = {}
        if isinstance(parts.masker, SizedMasker):
            sizes = {"num_context": parts.masker.num_context, "num_target": parts.masker.num_target}
        found = {"predictor": parts.build("predictor", required=True, **sizes)}
        decoder = parts.build("decoder")
        return found if decoder is None else {**found, "decoder": decoder}

    def __init__(self, backbone: Backbone, predictor: nn.Module,
                 regularizers: list[nn.Module] | None = None, decoder: nn.Module | None = None,
                 target: str = "latent", latent_relax: float = 0.05, latent_l1: float = 0.1,
                 latent_steps: int = 20, latent_step_size: float = 0.05) -> None:
        super().__init__()
        if not 0 <= latent_relax < 1:
            raise ValueError(f"objective.latent_relax must lie in [0, 1), got {latent_relax}")
        if latent_l1 < 0 or latent_steps < 1 or latent_step_size <= 0:
            raise ValueError("objective.latent_l1 must be >= 0, latent_steps >= 1 and "
                             f"latent_step_size > 0, got {latent_l1}, {latent_steps}, "
                             f"{latent_step_size}")
        self.latent_relax = latent_relax
        # a continuous latent (VJ-VCR's sparse z): inferred per sample by FISTA
        self.latent_dim = predictor.latent_dim if isinstance(predictor, LatentPredictor) else 0
        if self.latent_dim and target != "latent":
            raise ValueError("a continuous latent (model.predictor.latent_dim) needs "
                             "objective.target=latent")
        self.latent_l1, self.latent_steps = latent_l1, latent_steps
        self.latent_step_size = latent_step_size
        if target not in ("latent", "pixels"):
            raise ValueError(f"objective.target: '{target}' is not latent or pixels")
        if target == "pixels" and decoder is None:
            raise ValueError("objective.target=pixels needs a model.decoder")
        self.online, self.predictor, self.decoder, self.target_kind = backbone, predictor, decoder, target
        self.regularizers = nn.ModuleList(regularizers or [])
        self.monitor_embeddings: Tensor | None = None

    def infer_latent(self, context: Tensor, targets: Tensor) -> Tensor:
        """The continuous latent of each sample, `z* = argmin_z E(z) + λ ||z||_1` with
        `E(z) = ½ ‖Pred(context, z) - targets‖²` (summed over the target latents), by
        `latent_steps` FISTA steps from the prior `z = 0` (`polyjepa.latents`); the predictor's
        weights get no gradient from it.
        At evaluation the same call gives the best `z` of a clip whose future is known;
        `predictor(context)` (z = None) is the prior's prediction.

        Args:
            context: `[B, Nc, D]` context latents; targets: `[B, Nt, D]` target latents.

        Returns:
            `z*` `[B, latent_dim]`, detached.
        """
        context, targets = context.detach().float(), targets.detach().float()

        def energy(z: Tensor) -> Tensor:
            pred = self.predictor(context, z)[:, 0].float()  # [B, Nt, D]
            return 0.5 * (pred - targets).square().flatten(1).sum(-1)

        z0 = context.new_zeros(context.shape[0], self.latent_dim)
        with torch.autocast(context.device.type, enabled=False):
            return fista(energy, z0, self.latent_l1, self.latent_steps, self.latent_step_size)

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        masks = batch.masks
        if masks is None or masks.target.shape[1] != 1:
            raise ValueError("predictive_vcr needs one target set per sample (the `future` masker)")
        target_idx = masks.target[:, 0]  # [B, Nt]
        h = self.online(batch.x)  # [B, R + N, D], every token, with gradient
        h = h[:, self.online.num_prefix_tokens:]
        self.monitor_embeddings = h.detach().mean(1).float()
        context = gather_tokens(h, masks.context)  # [B, Nc, D]
        latent = None
        if self.latent_dim:
            latent = self.infer_latent(context, gather_tokens(h, target_idx))
        pred = self.predictor(context, latent) if self.latent_dim else self.predictor(context)
        if self.target_kind == "pixels":
            assert isinstance(batch.x, Tensor) and self.decoder is not None  # checked in __init__
            frames = torch.gather(batch.x, 1, target_idx.view(*target_idx.shape, 1, 1, 1).expand(
                -1, -1, *batch.x.shape[2:]))  # [B, Nt, C, H, W]
            energy = (self.decoder(pred).float() - frames.unsqueeze(1).float()).square()
            regularized = gather_tokens(h, masks.context)
        else:
            targets = gather_tokens(h, target_idx)  # [B, Nt, D]
            energy = (pred.float() - targets.unsqueeze(1).float()).square()
            regularized = h
        energy = energy.flatten(2).mean(-1)  # [B, K]
        best, choice = energy.min(dim=1)  # z* = argmin_z E(x, y, z)
        loss = best.mean()
        logs = {"loss_pred": loss.detach()}
        heads = energy.shape[1]
        if heads > 1:
            losers = (energy.sum(1) - best) / (heads - 1)
            loss = (1 - self.latent_relax) * loss + self.latent_relax * losers.mean()
            wins = torch.bincount(choice, minlength=heads).float()  # busiest head's share
            logs["latent_top_share"] = (wins.max() / len(choice)).detach()
        if latent is not None:
            logs["latent_nonzero"] = (latent != 0).float().mean()  # share of active coordinates
        for reg in self.regularizers:
            parts = [reg(regularized[:, i].float()) for i in range(regularized.shape[1])]
            loss = loss + torch.stack([p[0] for p in parts]).mean()
            for key in parts[0][1]:
                logs[key] = torch.stack([p[1][key] for p in parts]).mean()
        return loss, logs


@register("lejepa", kind="objective")
class LeJEPA(Objective):
    """LeJEPA (Balestriero & LeCun 2025): V views of every sample through one encoder and one
    projector; each view's projection is pulled towards the mean projection of the sample's
    global views, and SIGReg keeps the projections an isotropic Gaussian:

        loss = (1 - λ) mean_{v,b,k} (c_{b,k} - p_{v,b,k})² + λ mean_v SIGReg(p_v),
        c = mean of p over the first `global_views` views.

    No target network, no stop-gradient, no predictor; `lamb` is the one trade-off. The views
    are the collate's (`views` augmented copies of each sample, made by the collate-side
    augmentations) or, with device-side augmentations (BYOL-A's chain), those applied to the
    frontend features of all copies at once (`[V B, ...]`, one call per batch). The views beyond
    `global_views` predict the centre without forming it: the paper's local views, made by the
    recipe's `local_augmentations` when it has them (e.g. smaller crops: global and local views
    then go through the encoder as two batches, `[G B, ...]` and `[(V - G) B, ...]`), else by
    the same chain as the global ones.

    Args:
        backbone: online tokenizer + encoder (exported as is).
        projector: `[B, D_pool] -> [B, K]` (`model.projector`).
        views: V >= 2 views per sample.
        global_views: the views whose mean is the target (default: all).
        lamb: λ, SIGReg's share of the loss (paper: 0.05).
        num_slices, t_max, knots: SIGReg's directions and integration grid.
        pooling: how token latents become one vector (see `polyjepa.pooling`).
        regularizers: applied to each view's pooled embedding, added to the loss.
        augmentations: device-side augmentations, applied in order to `[V B, ...]` features (or
            `[G B, ...]`, the global views, when `local_augmentations` is given).
        local_augmentations: device-side augmentations of the local views, `[(V - G) B, ...]`.
    """

    def __init__(self, backbone: Backbone, projector: nn.Module, views: int = 2,
                 global_views: int | None = None, lamb: float = 0.05, num_slices: int = 1024,
                 t_max: float = 3.0, knots: int = 17, pooling: str = "mean",
                 regularizers: list[nn.Module] | None = None,
                 augmentations: list[nn.Module] | None = None,
                 local_augmentations: list[nn.Module] | None = None) -> None:
        super().__init__()
        if views < 2:
            raise ValueError(f"objective.views must be >= 2 (each view is predicted from the "
                             f"views' mean), got {views}")
        global_views = views if global_views is None else global_views
        if not 1 <= global_views <= views:
            raise ValueError(f"objective.global_views must lie in [1, views={views}], got "
                             f"{global_views}")
        if not 0 <= lamb <= 1:
            raise ValueError(f"objective.lamb must lie in [0, 1], got {lamb}")
        self.views, self.global_views, self.lamb = views, global_views, lamb
        self.pooling = pooling
        self.online, self.projector = backbone, projector
        self.sigreg = SIGReg(num_slices=num_slices, t_max=t_max, knots=knots)
        self.regularizers = nn.ModuleList(regularizers or [])
        self.augmentations = nn.ModuleList(augmentations or [])
        self.local_augmentations = nn.ModuleList(local_augmentations or [])
        if len(self.local_augmentations) and not len(self.augmentations):
            raise ValueError("device-side local augmentations need device-side augmentations for "
                             "the global views")
        # the collate makes the views, or passes the input and the device-side chain makes them
        self.num_views = 0 if len(self.augmentations) else views
        self.num_global_views = global_views if global_views < views else None
        self.monitor_embeddings: Tensor | None = None

    @classmethod
    def parts(cls, parts: Parts) -> dict[str, Any]:
        """The projector, sized by the pooled embedding."""
        return {"projector": parts.build("projector", required=True, in_dim=_pooled_width(parts))}

    def view_features(self, batch: Batch) -> list[Any]:
        """The frontend features of the views in groups of one shape, in view order: `[V B, ...]`
        when all views have one size, else `[G B, ...]` (global) and `[(V - G) B, ...]` (local)."""
        g, v = self.global_views, self.views
        if len(self.augmentations):
            if not len(self.local_augmentations):
                return [device_views(self.online, self.augmentations, batch, v)]
            generator = torch.Generator().manual_seed(batch.seed)  # one stream for both groups
            return [device_views(self.online, self.augmentations, batch, g, generator),
                    device_views(self.online, self.local_augmentations, batch, v - g, generator)]
        if len(batch.views) != v:
            raise ValueError(f"lejepa needs {v} augmented views per sample, the batch has "
                             f"{len(batch.views)}: give the recipe augmentations")
        groups = [batch.views]
        if g < v and _input_shape(batch.views[0]) != _input_shape(batch.views[g]):
            groups = [batch.views[:g], batch.views[g:]]
        return [self.online.features(concat_inputs(group)) for group in groups]

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        h = torch.cat([pool(self.online.encode(features), self.pooling,
                            self.online.num_prefix_tokens)
                       for features in self.view_features(batch)])  # [V B, D]
        p = self.projector(h).float()  # [V B, K]
        v = self.views
        p = p.view(v, -1, p.shape[-1])  # [V, B, K]
        self.monitor_embeddings = h[: p.shape[1]].detach().float()
        centre = p[: self.global_views].mean(0)  # [B, K]
        pred = (centre - p).square().mean()
        sigreg = torch.stack([self.sigreg.statistic(p[i]) for i in range(v)]).mean()
        loss = (1 - self.lamb) * pred + self.lamb * sigreg
        logs = {"loss_pred": pred.detach(), "sigreg": sigreg.detach()}
        for y in h.float().chunk(v):
            loss = _regularize(self.regularizers, y, loss, logs)
        return loss, logs


def _rollout_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Per-element loss `[..., D] -> [...]` for latent rollouts; `cosine` is 1 - cosine
    similarity (TS-JEPA's)."""
    losses = {"l1": lambda p, t: (p - t).abs().mean(-1), "mse": lambda p, t: (p - t).square().mean(-1),
              "cosine": lambda p, t: 1 - F.cosine_similarity(p, t, dim=-1)}
    if name not in losses:
        raise ValueError(f"objective.loss: unknown loss '{name}'; choose from {', '.join(losses)}")
    return losses[name]


@register("latent_rollout", kind="objective")
class LatentRollout(Objective):
    """Action-conditioned latent prediction over time (TS-JEPA, Girgis et al. 2024).

    The encoder gives one embedding per time step (the mean of the step's tokens; a causal
    encoder — `causal_window` — so that `z_t` sees no later step); from `starts` random steps
    `t` (the same for the batch; every step when None) the predictor rolls the embedding
    forward `horizon` steps, each step fed that step's actions
    (`tokenizer.step_actions`, when the data has any), and each predicted `z_{t+j}` is compared
    with the EMA target encoder's embedding of step `t + j`. Padding steps are left out of the
    loss. With `normalize_targets` targets are layer-normalised and the rollout runs in that
    space from a layer-normalised start.

    Args:
        backbone: online tokenizer + encoder (tokens laid out time-major on a grid).
        predictor: one rollout step, `(z [B, S, D], actions [B, S, F] | None) -> [B, S, D]`.
        horizon: H, steps rolled out from each start.
        starts: start steps per batch, drawn among those with H steps after them (all of them
            when None or when there are fewer).
        loss: `l1` | `mse` | `cosine` (1 - cosine similarity).
        normalize_targets: layer-norm targets (and rollout starts).
        regularizers: applied to the mean step embedding `[B, D]`.
        export: `target` (EMA) or `online` encoder in `encoder.pt`.
    """

    num_views = 0

    @classmethod
    def parts(cls, parts: Parts) -> dict[str, Any]:
        """The one-step predictor, told the width of each step's actions (0: none)."""
        return {"predictor": parts.build("predictor", required=True,
                                         action_dim=parts.backbone.layout.get("action_dim", 0))}

    def __init__(self, backbone: Backbone, predictor: nn.Module, horizon: int = 4,
                 starts: int | None = None, loss: str = "l1", normalize_targets: bool = True,
                 regularizers: list[nn.Module] | None = None, export: str = "target") -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"objective.horizon must be >= 1, got {horizon}")
        if export not in ("target", "online"):
            raise ValueError(f"objective.export: '{export}' is not target or online")
        grid = backbone.tokenizer.layout.get("grid")
        if grid is None:
            raise ValueError("latent_rollout needs a tokenizer that lays tokens out on a grid with "
                             "time first (e.g. timeseries.patches)")
        if backbone.encoder.causal_window is None:
            raise ValueError("latent_rollout needs a causal encoder (model.encoder.causal_window): "
                             "otherwise an embedding sees the steps it is asked to predict")
        if backbone.tokenizer.uses_future:
            raise ValueError("latent_rollout: RevIN's statistics span the whole series, so every "
                             "embedding would see the future; set model.tokenizer.revin false")
        if grid[0] < 2:
            raise ValueError(f"latent_rollout needs at least 2 time steps, the tokenizer makes "
                             f"{grid[0]}; lower model.tokenizer.patch")
        self.steps, self.per_step = grid[0], backbone.step_tokens
        self.horizon, self.starts = horizon, starts
        self.normalize_targets, self.export = normalize_targets, export
        self.loss_fn = _rollout_loss(loss)
        self.online, self.target, self.predictor = backbone, make_target(backbone), predictor
        self.regularizers = nn.ModuleList(regularizers or [])
        self.monitor_embeddings: Tensor | None = None

    def step_latents(self, backbone: Backbone, features: Any) -> tuple[Tensor, Tensor]:
        """Per-step embeddings `[B, N, D]` and which steps are real (not padding) `[B, N]`
        (N = the steps of this input)."""
        tokens = backbone.tokenizer(features)
        h = backbone.encoder(tokens)[:, backbone.num_prefix_tokens:]
        b, n, d = h.shape
        steps = n // self.per_step  # fewer than the training length for a shorter input
        z = h.view(b, steps, self.per_step, d).mean(2)
        if tokens.pad_mask is None:
            return z, torch.ones(b, steps, dtype=torch.bool, device=h.device)
        return z, ~tokens.pad_mask.view(b, steps, self.per_step)[..., 0]

    def start(self, z: Tensor) -> Tensor:
        """Where rollouts start from an embedding `[..., D]` (layer-normalised when targets are)."""
        return F.layer_norm(z, z.shape[-1:]) if self.normalize_targets else z

    def rollout(self, z: Tensor, actions: Tensor | None, steps: int) -> Tensor:
        """Roll encoder embeddings `z [B, S, D]` forward `steps` steps with the actions of each
        step `[B, S, steps, F]` (or None): predicted embeddings `[B, S, steps, D]`."""
        z, out = self.start(z), []
        for j in range(steps):
            z = self.predictor(z, None if actions is None else actions[:, :, j])
            out.append(z)
        return torch.stack(out, dim=2)

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        features = self.online.features(batch.x)
        z, valid = self.step_latents(self.online, features)  # [B, N, D], [B, N]
        with torch.no_grad():
            targets, _ = self.step_latents(self.target, features)
            self.monitor_embeddings = targets.mean(1).float()
            if self.normalize_targets:
                targets = F.layer_norm(targets, targets.shape[-1:])
        step_actions = self.online.tokenizer.step_actions
        actions = None if step_actions is None else step_actions(features)  # [B, N, F] | None
        horizon = min(self.horizon, self.steps - 1)
        first = torch.arange(self.steps - horizon, device=z.device)  # starts with H steps after
        if self.starts is not None and self.starts < len(first):
            first = first[torch.randperm(len(first), device=z.device)[: self.starts]].sort().values
        current = self.start(z[:, first])  # [B, S, D]
        total = torch.zeros((), device=z.device)
        weight = torch.zeros((), device=z.device)
        for j in range(1, horizon + 1):
            step = first + j
            current = self.predictor(current, None if actions is None else actions[:, step])
            mask = (valid[:, step] & valid[:, first]).float()
            total = total + (self.loss_fn(current.float(), targets[:, step].float()) * mask).sum()
            weight = weight + mask.sum()
        loss = total / weight.clamp_min(1)
        logs = {"loss_pred": loss.detach()}
        loss = _regularize(self.regularizers, z.mean(1).float(), loss, logs)
        return loss, logs

    def train(self, mode: bool = True) -> LatentRollout:
        super().train(mode)
        self.target.eval()  # deterministic targets, as JEPA's
        return self

    def update_target(self, momentum: float) -> None:
        ema_update(self.target, self.online, momentum)

    def export_backbone(self) -> Backbone:
        return self.online if self.export == "online" else self.target
