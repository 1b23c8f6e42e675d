"""What the core asks of every part a plugin supplies, written as types.

A recipe names one component per slot (`model.frontend`, `model.tokenizer`, `model.encoder`,
`model.predictor` / `projector` / `decoder`, `masker`, `augmentations`, `regularizers`,
`objective`); the slot's protocol below says what the built object must have. Each is checked
when it is built (:func:`conform`, called by `polyjepa.build.call_factory`): a missing member is a
`ContractError` naming the slot, the component and the member, not an `AttributeError` in the
middle of the first step.

**Optional members (hooks)** are listed with their defaults in :data:`HOOKS`; `conform` gives a
part that lacks one its default, so the core reads every member directly. Objectives subclass
:class:`Objective`, whose methods are the defaults of theirs.

The plugin's own callables (`ModalityPlugin.load_data`, `synthetic`, ...) have their protocols at
the end of this module.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from torch import Tensor, nn

from polyjepa.errors import ContractError
from polyjepa.types import Batch, Masks, RawInput, Tokens

if TYPE_CHECKING:
    from polyjepa.build import Parts
    from polyjepa.encoders import Backbone

Layout = dict[str, Any]
"""What a frontend or tokenizer tells maskers and encoders about its tokens: `num_tokens`,
`grid` (e.g. `(time, frequency)` patches), `action_dim`, ..."""


@runtime_checkable
class Frontend(Protocol):
    """A fixed feature transform on the training device (`model.frontend`, e.g. log-mel):
    `(x: RawInput) -> features`. Hook: `layout` (default `{}`)."""

    layout: Layout

    def __call__(self, x: RawInput) -> Any: ...


@runtime_checkable
class Tokenizer(Protocol):
    """Features -> `Tokens` (`x [B, N, D]`, `pos`, optional `pad_mask`) (`model.tokenizer`).

    Members: `dim` (D). Hooks: `layout` (default `{}`); `step_actions` (default None): for data
    with actions, `(features) -> [B, steps, A] | None`, each time step's actions (TS-JEPA);
    `uses_future` (default False): True when a token depends on later time steps (RevIN's
    statistics over the whole series), which causal objectives reject.
    """

    dim: int
    layout: Layout
    step_actions: Callable[[Any], Tensor | None] | None
    uses_future: bool

    def __call__(self, features: Any) -> Tokens: ...


@runtime_checkable
class Encoder(Protocol):
    """`(tokens: Tokens, keep: [B, K] | None) -> [B, R + K, D]` latents, `R` prefix (register)
    tokens first; `keep` selects the visible tokens (JEPA's context) (`model.encoder`).

    Members: `dim` (D). Hooks: `num_prefix_tokens` (default 0); `causal_window` (default None:
    bidirectional; n: a token sees its own and the n - 1 earlier time steps). An encoder class
    whose `reads_features` is true reads the frontend's features itself (a CNN) and needs no
    tokenizer; it is then called with the features alone.
    """

    dim: int
    num_prefix_tokens: int
    causal_window: int | None


@runtime_checkable
class Masker(Protocol):
    """`(batch_size, generator) -> Masks` (`masker`), called in the collate.

    Hooks: `reads_input` (default False): called `(x, generator)` with the batched raw input
    instead, to draw around what it holds; `progressive` (default False): called
    `(batch_size, generator, position)` with the batch's position in the run (curricula).
    """

    reads_input: bool
    progressive: bool

    def __call__(self, *args: Any) -> Masks: ...


@runtime_checkable
class SizedMasker(Protocol):
    """A masker whose context and target sizes are fixed (e.g. `future`): predictors that map
    `Nc` context latents to `Nt` targets are sized from them."""

    num_context: int
    num_target: int


@runtime_checkable
class Augmentation(Protocol):
    """`(x, generator) -> x` (`augmentations`). Hooks: `on_device` (default False): an
    `nn.Module` run by the objective on the training device on the frontend's features,
    batched (`[2B, ...]` for two views); otherwise it runs in the collate on raw inputs;
    `rank_local` (default False): its buffers are each process's own under DDP."""

    on_device: bool
    rank_local: bool

    def __call__(self, x: Any, generator: Any) -> Any: ...


@runtime_checkable
class Predictor(Protocol):
    """A head (`model.predictor`, `model.projector`, `model.decoder`); its call signature is the
    objective's business (JEPA: `(context latents, context pos, target pos) -> [B, M, Nt, D]`)."""

    def __call__(self, *args: Any) -> Any: ...


@runtime_checkable
class LatentPredictor(Protocol):
    """A predictor taking a continuous latent variable: `(context, z [B, latent_dim]) -> ...`
    (`predictive_vcr` infers `z` per sample; `z = None` is the prior)."""

    latent_dim: int

    def __call__(self, context: Tensor, z: Tensor | None = None) -> Any: ...


@runtime_checkable
class Projector(Protocol):
    """`[B, D_in] -> [B, out_dim]` (`model.projector`; BYOL sizes its predictor from it)."""

    out_dim: int

    def __call__(self, z: Tensor) -> Tensor: ...


@runtime_checkable
class Regularizer(Protocol):
    """`(z [B, D]) -> (loss, logs)` (`regularizers`): a collapse penalty on embeddings."""

    def __call__(self, z: Tensor) -> tuple[Tensor, dict[str, Tensor]]: ...


@runtime_checkable
class StepAware(Protocol):
    """A part whose randomness follows the training step (SIGReg's random directions): before
    each step's forward the trainer calls `set_step(step)` on every such module of the
    objective, so every rank, every view of a step and a resumed run draw the same."""

    def set_step(self, step: int) -> None: ...


class Objective(nn.Module, abc.ABC):
    """Base of every objective (`objective`): `forward(batch) -> (loss, logs)`.

    `logs` holds detached scalar tensors. Subclasses set `online` (the backbone being trained)
    and override what differs from these defaults:

    Attributes:
        num_views: augmented views the collate makes per sample (0: the collate-side
            augmentations transform the input itself, and the objective makes its own views or
            needs none).
        num_global_views: of those views, how many the recipe's `augmentations` make; the rest
            (local views, LeJEPA's) come from `local_augmentations`. None: all of them (an
            objective without local views).
        monitor_embeddings: the last batch's pooled embeddings `[B, D]`, for collapse monitors
            (None: not monitored).
    """

    num_views: int = 2
    num_global_views: int | None = None
    online: Backbone
    monitor_embeddings: Tensor | None = None

    @classmethod
    def parts(cls, parts: Parts) -> dict[str, Any]:
        """The modules this objective is built with besides the backbone, regularizers and
        device-side augmentations, by parameter name. Default: each of `model.predictor`,
        `model.projector`, `model.decoder` the recipe gives, built with `in_dim` = the backbone's
        width. Objectives that size their heads otherwise (BYOL's predictor reads its projector's
        `out_dim`) or require one override this."""
        return {name: module for name in ("predictor", "projector", "decoder")
                if (module := parts.build(name)) is not None}

    @abc.abstractmethod
    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """`(loss, logs)` of one batch; a subclass without it cannot be built."""

    def update_target(self, momentum: float) -> None:
        """After each optimizer step: move target networks toward the online ones (none here)."""

    def export_backbone(self) -> Backbone:
        """The encoder `encoder.pt` holds (default: the online one)."""
        return self.online


PROTOCOLS: dict[str, type] = {
    "frontend": Frontend, "tokenizer": Tokenizer, "encoder": Encoder, "masker": Masker,
    "augmentation": Augmentation, "predictor": Predictor, "decoder": Predictor,
    "regularizer": Regularizer, "objective": Objective,
}
"""The protocol each slot kind's parts must satisfy."""

HOOKS: dict[str, dict[str, Any]] = {
    "frontend": {"layout": {}},
    "tokenizer": {"layout": {}, "step_actions": None, "uses_future": False},
    "encoder": {"num_prefix_tokens": 0, "causal_window": None},
    "masker": {"reads_input": False, "progressive": False},
    "augmentation": {"on_device": False, "rank_local": False},
}
"""Optional members by slot kind, with the default a part without them gets."""


def _missing(obj: Any, protocol: type) -> list[str]:
    members = [*getattr(protocol, "__annotations__", {}),
               *(["__call__"] if "__call__" in protocol.__dict__ else [])]
    return [m for m in members if not hasattr(obj, m)]


def conform(obj: Any, kind: str, what: str) -> Any:
    """`obj` with its missing hooks set to their defaults, after checking it has every member
    its slot's protocol asks for.

    Raises:
        ContractError: naming `what` (e.g. "model.tokenizer 'tabular.feature' (polyjepa)"),
            the protocol and the missing members.
    """
    protocol = PROTOCOLS.get(kind)
    if protocol is None:
        return obj
    for name, default in HOOKS.get(kind, {}).items():
        if not hasattr(obj, name):
            setattr(obj, name, copy.copy(default))
    if protocol is Objective:
        if not isinstance(obj, Objective):
            raise ContractError(f"{what} is a {type(obj).__name__}, not a subclass of "
                                "polyjepa.contracts.Objective (which gives the defaults of "
                                "update_target, export_backbone, num_views and parts)")
        return obj
    missing = _missing(obj, protocol)
    if missing:
        raise ContractError(f"{what} does not satisfy polyjepa.contracts.{protocol.__name__}: "
                            f"it has no {', '.join(missing)} (see that protocol's docstring)")
    return obj


# --- datasets ----------------------------------------------------------------------------------
# A plugin's datasets yield `(x, y)`: `x` a `RawInput`, `y` an integer class (-1: none). What else
# the core uses when a dataset has it:


@runtime_checkable
class Labelled(Protocol):
    """A dataset that knows its labels without reading its samples (every built-in one does)."""

    labels: Any  # [N] class indices (tensor or array), -1 where a sample has none


@runtime_checkable
class Identified(Protocol):
    """A dataset that can name its samples (file paths, `file:row`), for `embed`'s output."""

    def sample_ids(self) -> list[str]:
        """One id per sample `[N]`, in dataset order."""
        ...


@runtime_checkable
class Sampled(Protocol):
    """A dataset whose samples are drawn (random crops): training reads `sample(index,
    generator)` with a generator seeded from the batch seed and the index, not `dataset[index]`."""

    def sample(self, index: int, generator: Any) -> Any: ...


@runtime_checkable
class HasProbeTargets(Protocol):
    """A dataset with more targets than its label (a speaker, a video's speeds), probed by
    `polyjepa eval` beside it: name -> `[N]` classes or `[N, k]` real values."""

    def probe_targets(self) -> dict[str, Any]: ...


# --- the plugin's callables (ModalityPlugin's fields) ------------------------------------------

LoadedData = tuple[Any, Any, dict[str, Any]]
"""`(train, test, meta)`: two datasets yielding `(x, y)` and the plain-data `meta`."""


class LoadData(Protocol):
    """`(data_config, data_root) -> (train, test, meta)`: the recipe's `data:` section read."""

    def __call__(self, cfg: Any, root: Path | None, /) -> LoadedData: ...


class Synthetic(Protocol):
    """`(n=..., seed=...) -> (train, test, meta)`: a small built-in set; `n` has a default."""

    def __call__(self, *, seed: int = ...) -> LoadedData: ...


class RawFeatures(Protocol):
    """`(dataset) -> [N, F]`: the raw-feature baseline of the probes."""

    def __call__(self, dataset: Any, /) -> Tensor: ...


class Featurizer(Protocol):
    """`(dataset) -> [N, F]` float array: a fitted baseline's features of a dataset's `N` samples
    (a dataset the plugin made, as `RawFeatures` gets)."""

    def __call__(self, dataset: Any, /) -> np.ndarray: ...


class Baseline(Protocol):
    """`(dataset, rows [n], seed) -> Featurizer`: a label-free baseline of the modality's field
    (time series: MiniRocket) fitted on the samples `rows` of `dataset` (a dataset the plugin
    made, whole; `rows` are the run's training split: never their labels, never the other
    samples), its randomness seeded by `seed` (`eval.seed`). `polyjepa eval` probes the
    features the fitted baseline gives the training and test splits beside the encoders' and
    the raw features (`ModalityPlugin.baselines`).

    Raises:
        MissingExtraError: an optional package it needs is not installed
            (`polyjepa.extras.require`); the evaluation skips it with one logged line.
    """

    def __call__(self, dataset: Any, rows: np.ndarray, seed: int, /) -> Featurizer: ...


class LoadFile(Protocol):
    """`(data_config, path, data_root, meta) -> dataset`: one more file read with a run's fitted
    preprocessing (`eval --data`, `embed`)."""

    def __call__(self, cfg: Any, path: str, root: Path | None, meta: dict[str, Any], /) -> Any: ...


class Importer(Protocol):
    """`(loaded, path) -> (recipe dict, meta, backbone state_dict) | None`: another framework's
    checkpoint converted, or None when the file is not theirs."""

    def __call__(self, loaded: Any, path: Path, /) -> tuple[dict, dict, dict] | None: ...


class EvalProtocol(Protocol):
    """`(run_dir=, recipe=, train_set=, test_set=, device=) -> dict`: a modality's evaluation,
    JSON-ready; a `table` entry (a list of row dicts) is printed as a table."""

    def __call__(self, *, run_dir: Any, recipe: Any, train_set: Any, test_set: Any,
                 device: Any) -> dict[str, Any]: ...
