"""From a recipe to objects: config, datasets, backbone, objective, masker, augmentations.

Every component spec (`{"name": ..., **kwargs}`) is checked against its factory's signature;
parameters the recipe leaves out are filled by name from the build context (the dataset's `meta`,
e.g. `num_numeric`, `cardinalities`, `num_tokens`, and widths such as `dim` / `in_dim`).
"""

from __future__ import annotations

import functools
import inspect
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from polyjepa import config as C
from polyjepa.budget import Budget, resolve_budget
from polyjepa.contracts import Objective, conform
from polyjepa.data import (
    Collate,
    PretrainingSet,
    carve_validation,
    dataset_labels,
    fitting_batch_size,
)
from polyjepa.encoders import Backbone
from polyjepa.errors import ConfigError
from polyjepa.paths import DATA_ROOT_ENV, data_root, expand_pattern, is_name, resolve_path
from polyjepa.registry import ModalityPlugin, get_component, get_modality, raised_at
from polyjepa.targets import is_regression


@dataclass
class Recipe:
    """A validated recipe and where it came from."""

    cfg: C.RecipeConfig
    source: str  # file name, for error messages
    plugin: ModalityPlugin


def load_recipe(recipe: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a shipped recipe name or YAML path, apply `key=value` overrides and validate.

    A shipped recipe describes polyjepa's own datasets: an override of `data.path` sets its
    settings of that data (`DataConfig.dataset_keys`: test file, label pattern, target and
    columns, a generator) back to neutral values unless they are overridden too, with one
    warning naming them. A user's own YAML is taken as written."""
    path = C.find_recipe(str(recipe))
    raw = C.read_recipe(path)
    if overrides and path.resolve().parent == C.recipes_dir().resolve():
        modality = C.apply_overrides(raw, list(overrides)).get("modality")
        if isinstance(modality, str):
            raw, reset = C.reset_dataset_keys(raw, list(overrides),
                                              get_modality(modality).data_config)
            if reset:
                warnings.warn(f"data.path given, so the recipe's settings of its own data were "
                              f"set back to neutral values: {', '.join(reset)} (give them on the "
                              "command line too to keep the recipe's)", stacklevel=2)
    return recipe_from_dict(raw, str(path), overrides)


def recipe_from_dict(raw: dict, source: str, overrides: Sequence[str] = ()) -> Recipe:
    """Validate a recipe dict with `key=value` overrides applied."""
    if overrides:
        raw = C.apply_overrides(raw, list(overrides))
        source = f"{source} (with command-line overrides)"
    modality = raw.get("modality")
    if not isinstance(modality, str):
        raise ConfigError(f"{source}: missing required key 'modality' (e.g. modality: tabular)")
    plugin = get_modality(modality)
    return Recipe(C.validate(raw, source, plugin.data_config), source, plugin)


@dataclass
class Splits:
    """A recipe's data: `train` (without the validation part), `val` (None without
    `data.val_fraction`), `test`, and the plugin's `meta` (fitted on the whole training split)."""

    train: Any
    val: Any
    test: Any
    meta: dict


def load_splits(recipe: Recipe) -> Splits:
    """The recipe's data section read by its plugin (or the modality's synthetic set), with the
    validation split carved from the training split when `data.val_fraction` > 0."""
    cfg = recipe.cfg
    if cfg.synthetic:
        train, test, meta = recipe.plugin.synthetic(seed=cfg.train.seed)
    else:
        if "path" in C.path_keys(cfg) and not cfg.data.path:
            raise ConfigError(f"{recipe.source}: data.path is empty: this recipe trains on your "
                              "data; give it on the command line, e.g. data.path=my_data (a "
                              "file or folder; relative paths are looked up in the working "
                              f"folder, then under ${DATA_ROOT_ENV})")
        train, test, meta = recipe.plugin.load_data(cfg.data, data_root(cfg.data_root))
        if (isinstance(cfg.data, C.DataConfig) and cfg.data.task == "regression"
                and len(train) and not is_regression(dataset_labels(train))):
            raise ConfigError(f"{recipe.source}: data.task=regression, but the {cfg.modality} "
                              "plugin read class labels (folders, label patterns); regression "
                              "targets are read from tables and series (a numeric label column)")
    val = None
    if C.val_fraction(cfg) > 0:
        train, val = carve_validation(train, C.val_fraction(cfg), cfg.eval.seed)
    return Splits(train, val, test, meta)


def load_unlabelled(recipe: Recipe, meta: dict) -> list[Any]:
    """The datasets of `data.unlabelled`, one per entry, each read by the plugin's `load_file`
    with the preprocessing fitted on the labelled training split (`meta`); labels they may
    carry are never used.

    Raises:
        DataError: a path that does not exist, a pattern that matches nothing, a file the
            modality cannot read or whose samples differ in kind from the training data's (the
            plugin's message, naming the file).
    """
    root = data_root(recipe.cfg.data_root)
    specs = C.unlabelled_paths(recipe.cfg)
    for i, spec in enumerate(specs):  # every path checked before any is read
        for path in expand_pattern(spec, root, f"data.unlabelled[{i}]"):
            if not is_name(path):
                resolve_path(path, root, f"data.unlabelled[{i}]")
    return [recipe.plugin.load_file(recipe.cfg.data, spec, root, meta) for spec in specs]


def load_datasets(recipe: Recipe) -> tuple[Any, Any, dict]:
    """`(train, test, meta)` of `load_splits` (train without its validation part)."""
    splits = load_splits(recipe)
    return splits.train, splits.test, splits.meta


def call_factory(spec: dict, kind: str, field: str, recipe: Recipe, context: dict) -> Any:
    """Build the component `spec` names for slot `kind`, checking its options.

    Raises:
        ConfigError: unknown component, unknown option (lists the accepted ones), missing
            required option, or a value the component rejects; each names `field` and the file.
    """
    if "name" not in spec:
        raise ConfigError(f"{recipe.source}: {field}: missing 'name'")
    name = spec["name"]
    try:
        component = get_component(name, kind, recipe.cfg.modality)
    except LookupError as exc:
        raise ConfigError(f"{recipe.source}: {field}: {exc}") from None
    params = inspect.signature(component.factory).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    hints = option_types(component.factory)
    for key in kwargs:
        if key not in params and not accepts_any:
            options = ", ".join(p for p in params if p not in context) or "none"
            raise ConfigError(
                f"{recipe.source}: unknown key '{field}.{key}' for {kind} '{name}'"
                f"{C.did_you_mean(key, [p for p in params if p not in context], field + '.')}; "
                f"its options: {options}"
            )
        if key in hints and C.is_plain_type(hints[key]):
            try:
                kwargs[key] = C.coerce(kwargs[key], hints[key], f"{field}.{key}", recipe.source)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (an option of {kind} '{name}')") from None
    for pname, param in params.items():
        if pname in kwargs or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if pname in context:
            kwargs[pname] = context[pname]
        elif param.default is inspect.Parameter.empty:
            raise ConfigError(f"{recipe.source}: {field}: {kind} '{name}' needs option '{pname}'")
    try:
        built = component.factory(**kwargs)
    except (ValueError, TypeError) as exc:  # a value the component rejects; other errors propagate
        raise ConfigError(f"{recipe.source}: {field}: {kind} '{name}' ({component.origin}) "
                          f"rejected its options: {type(exc).__name__}{raised_at(exc)}: {exc}"
                          ) from exc
    return conform(built, kind, f"{recipe.source}: {field}: {kind} '{name}' ({component.origin})")


def option_types(factory: Any) -> dict[str, Any]:
    """A component factory's parameter type hints (its `__init__`'s for a class); none where
    they cannot be resolved."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: options stay unchecked
        return {}


def build_backbone(recipe: Recipe, meta: dict) -> Backbone:
    """Frontend + tokenizer + encoder; the encoder's `dim` defaults to the tokenizer's."""
    model = recipe.cfg.model
    frontend = None
    if model.frontend is not None:
        frontend = call_factory(model.frontend, "frontend", "model.frontend", recipe, meta)
    context = {**meta, **(frontend.layout if frontend is not None else {})}
    tokenizer: nn.Module = nn.Identity()
    if model.tokenizer is not None:
        tokenizer = call_factory(model.tokenizer, "tokenizer", "model.tokenizer", recipe, meta)
        context.update(dim=tokenizer.dim, **tokenizer.layout)
    else:
        name = model.encoder.get("name", "")
        try:
            reads_features = getattr(get_component(name, "encoder", recipe.cfg.modality).factory,
                                     "reads_features", False)
        except LookupError:
            reads_features = True  # call_factory reports the unknown name
        if not reads_features:
            raise ConfigError(f"{recipe.source}: model.tokenizer: encoder '{name}' reads tokens; "
                              "name a tokenizer (only feature encoders such as CNNs go without)")
    encoder = call_factory(model.encoder, "encoder", "model.encoder", recipe, context)
    return Backbone(tokenizer, encoder, frontend)


PART_KINDS = {"predictor": "predictor", "projector": "predictor", "decoder": "decoder"}
"""The slot kind each of the recipe's `model.<part>` heads is looked up as."""


@dataclass
class Parts:
    """What an objective's `parts` hook (`polyjepa.contracts.Objective.parts`) builds its heads
    from: the recipe, the data's `meta`, the built backbone and (on first use) the masker."""

    recipe: Recipe
    meta: dict
    backbone: Backbone
    objective: str
    given_masker: Any = None

    @functools.cached_property
    def masker(self) -> Any:
        """The run's masker (None without one)."""
        if self.given_masker is not None:
            return self.given_masker
        return build_masker(self.recipe, self.meta, self.backbone.layout)

    def build(self, part: str, required: bool = False, **context: Any) -> Any:
        """The recipe's `model.<part>` (predictor, projector or decoder), its options filled from
        `meta`, `in_dim` = the backbone's width and `context`; None when the recipe has none.

        Raises:
            ConfigError: `required` and the recipe has none.
        """
        spec = getattr(self.recipe.cfg.model, part)
        if spec is None:
            if required:
                raise ConfigError(f"{self.recipe.source}: model.{part}: the {self.objective} "
                                  "objective needs one")
            return None
        return call_factory(spec, PART_KINDS[part], f"model.{part}", self.recipe,
                            {**self.meta, "in_dim": self.backbone.dim, **context})


def build_objective(recipe: Recipe, meta: dict, augmentations: Sequence[Any] = (),
                    backbone: Backbone | None = None, masker: Any = None,
                    local_augmentations: Sequence[Any] = ()) -> Objective:
    """The recipe's objective with its backbone (built here unless given), the heads its
    `parts` hook asks for, the regularizers and the device-side `augmentations` and
    `local_augmentations` (which the objective owns, so their state is checkpointed). `masker`:
    the run's, for objectives whose heads are sized by it (built when such an objective asks, if
    not given)."""
    cfg = recipe.cfg
    backbone = backbone if backbone is not None else build_backbone(recipe, meta)
    regularizers = [
        call_factory(spec, "regularizer", f"regularizers[{i}]", recipe, meta)
        for i, spec in enumerate(cfg.regularizers)
    ]
    name = cfg.objective.get("name", "")
    try:
        factory = get_component(name, "objective", cfg.modality).factory
    except LookupError:
        factory = None  # call_factory reports the unknown (or missing) name
    context: dict[str, Any] = {**meta, "backbone": backbone, "regularizers": regularizers}
    if augmentations:
        context["augmentations"] = augmentations
    if local_augmentations:
        context["local_augmentations"] = local_augmentations
    if isinstance(factory, type) and issubclass(factory, Objective):
        objective_class: type[Objective] = factory
        context.update(objective_class.parts(Parts(recipe, meta, backbone, name, masker)))
    return call_factory(cfg.objective, "objective", "objective", recipe, context)


def build_masker(recipe: Recipe, meta: dict, layout: dict | None = None,
                 steps: int | None = None) -> Any:
    """The recipe's masker; options it omits come from `meta`, the tokenizer's `layout` (token
    grid) and `total_batches` (micro-batches of the whole run of `steps` optimizer steps,
    `train.max_steps` by default, for curricula)."""
    spec = recipe.cfg.masker
    if spec is None:
        return None
    train = recipe.cfg.train
    steps = train.max_steps if steps is None else steps
    context = {**meta, **(layout or {}), "total_batches": steps * train.accumulate}
    return call_factory(spec, "masker", "masker", recipe, context)


def build_augmentations(recipe: Recipe, meta: dict, local: bool = False) -> list[Any]:
    """The recipe's `augmentations` (or, `local`, its `local_augmentations`), in order. Those
    with a true `on_device` attribute are `nn.Module`s the objective runs on the training device,
    batched, on frontend features; the others run in the collate on raw inputs."""
    field = "local_augmentations" if local else "augmentations"
    specs = recipe.cfg.local_augmentations if local else recipe.cfg.augmentations
    return [call_factory(spec, "augmentation", f"{field}[{i}]", recipe, meta)
            for i, spec in enumerate(specs)]


def split_augmentations(augmentations: list[Any]) -> tuple[list[Any], list[Any]]:
    """`(collate-side, device-side)` augmentations; device-side ones must come last."""
    on_device = [bool(a.on_device) for a in augmentations]
    first = on_device.index(True) if any(on_device) else len(on_device)
    if not all(on_device[first:]):
        raise ConfigError("augmentations: device-side augmentations (on features) must come "
                          "after every collate-side one (on raw inputs)")
    return augmentations[:first], augmentations[first:]


def split_local_augmentations(local: list[Any], on_device: bool) -> tuple[list[Any], list[Any]]:
    """`(collate-side, device-side)` local augmentations. Local views are made where the global
    ones are: on the device from the features when `augmentations` has device-side members
    (`on_device`), in the collate from the raw input otherwise."""
    if any(bool(a.on_device) != on_device for a in local):
        side = "device-side (on features)" if on_device else "collate-side (on raw inputs)"
        raise ConfigError(f"local_augmentations: every local augmentation must be {side}, as the "
                          "global views' chain ends: local views are made where the global ones "
                          "are")
    return ([], local) if on_device else (local, [])


@dataclass
class Run:
    """A recipe assembled for training, in one place (`assemble`): its data, its length, its
    objective (backbone, heads, regularizers, device-side augmentations) and the collate that
    draws each batch's masks and views. The trainer adds only what depends on the process:
    device, DDP, loader, optimizer."""

    recipe: Recipe
    splits: Splits
    pretraining: Any  # what pretraining reads: `splits.train`, then `data.unlabelled`'s pools
    unlabelled_samples: int  # how many of `pretraining`'s samples the pools add
    batch_size: int  # per process: `train.batch_size`, or the samples each has when fewer
    budget: Budget
    objective: Objective
    collate: Collate


def assemble(recipe: Recipe, world_size: int = 1) -> Run:
    """Recipe -> plugin's data -> batch size and length -> backbone -> masker -> objective ->
    collate, for a run over `world_size` processes."""
    splits = load_splits(recipe)
    pools = [pool for pool in load_unlabelled(recipe, splits.meta) if len(pool)]
    pretraining = PretrainingSet([splits.train, *pools]) if pools else splits.train
    train = recipe.cfg.train
    # the batch fits the data: a small dataset trains on batches of all of it
    batch_size = fitting_batch_size(train.batch_size, len(pretraining), "train.batch_size",
                                    world_size)
    budget = resolve_budget(train, recipe.cfg.optim.warmup_steps, len(pretraining), batch_size,
                            world_size)
    collate_side, device_side = split_augmentations(build_augmentations(recipe, splits.meta))
    try:
        collate_local, device_local = split_local_augmentations(
            build_augmentations(recipe, splits.meta, local=True), bool(device_side))
    except ConfigError as exc:
        raise ConfigError(f"{recipe.source}: {exc}") from None
    backbone = build_backbone(recipe, splits.meta)
    masker = build_masker(recipe, splits.meta, backbone.layout, budget.steps)
    objective = build_objective(recipe, splits.meta, device_side, backbone, masker, device_local)
    if recipe.cfg.local_augmentations and objective.num_global_views is None:
        raise ConfigError(
            f"{recipe.source}: local_augmentations: objective '{recipe.cfg.objective['name']}' "
            "makes no local views; give it fewer global views than views (lejepa: "
            "objective.global_views < objective.views) or remove local_augmentations")
    collate = Collate(masker, collate_side, objective.num_views, collate_local,
                      objective.num_global_views)
    return Run(recipe, splits, pretraining, len(pretraining) - len(splits.train), batch_size,
               budget, objective, collate)
