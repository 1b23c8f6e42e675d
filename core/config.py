"""Recipes: YAML files validated against typed dataclass schemas.

A recipe is plain data. Sections map one-to-one to the stages of a run (data, model, masker,
objective, ema, optim, train, eval). Component sections (``model.tokenizer``, ``masker``, ...)
hold ``name`` plus the factory's keyword arguments; they are checked against the factory's
signature when the run is built (:func:`polyjepa.build.call_factory`).

Unknown keys and wrong types are :class:`~polyjepa.errors.ConfigError`s that name the key and the
file (or "command line" for overrides).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polyjepa.errors import ConfigError
from polyjepa.targets import TASKS
from polyjepa.trackers import check_loggers

POOLINGS = ("mean", "flatten", "prefix", "mean_max", "mean_plus_max", "last")
"""`eval.pooling` modes (`polyjepa.pooling.pool` implements them)."""

Spec = dict[str, Any]
"""A component spec: ``{"name": "tabular.feature", **kwargs}``."""


@dataclass
class DataConfig:
    """Data keys the core reads for every modality whose `data:` schema extends this class (the
    built-in ones do; a plugin's schema that does not simply lacks these keys)."""

    # Share of the training split held out as a validation split (stratified by label, seeded by
    # `eval.seed`, the same for every pretraining seed): the online probe scores on it and
    # `eval.split=val` probes on it; pretraining and probes then train on the rest. The test split
    # is never touched. 0 turns it off.
    val_fraction: float = field(default=0.0, kw_only=True)
    # Unlabelled data for pretraining only: folders (flat, or with class folders whose names are
    # ignored), files, glob patterns (`clips/**/*.wav`) or manifests without a label column, read
    # by the modality's `load_file` with the preprocessing fitted on `path`'s training split. The
    # probes, selection and evaluation never see them. One path or a list.
    unlabelled: str | list[str] = field(default_factory=list, kw_only=True)
    # What the labels are: `classification`, `regression` (real-valued targets: ridge probes,
    # R² and MAE, label efficiency by fraction), or `auto`: regression for a numeric label with
    # many distinct values (`polyjepa.targets.decide_task`). Plugins that read only classes
    # (class folders, label patterns) refuse `regression`.
    task: str = field(default="auto", kw_only=True)

    # Keys holding file or folder paths: a run stores them absolute (`polyjepa.paths.pin_paths`),
    # so that `eval`, `finetune` and `embed` find its data from any folder.
    path_keys: typing.ClassVar[tuple[str, ...]] = ()
    # Keys that describe one particular dataset (its test file, label pattern, columns, a
    # generator), and the value each takes when a command line gives another `data.path`: a
    # demo's settings for its own data must not silently apply to the user's (`reset_dataset_keys`).
    dataset_keys: typing.ClassVar[dict[str, Any]] = {}


@dataclass
class ModelConfig:
    tokenizer: Spec | None = None  # features -> Tokens [B, N, D]; None: the encoder reads features
    encoder: Spec = field(default_factory=lambda: {"name": "transformer"})  # Tokens -> [B, N, D]
    frontend: Spec | None = None  # fixed feature transform on the device, e.g. audio.logmel
    predictor: Spec | None = None  # JEPA: context latents -> target latents; BYOL: MLP head
    projector: Spec | None = None  # BYOL only: pooled latent -> projection
    decoder: Spec | None = None  # generative objectives: latent -> input (e.g. video.frame_decoder)


@dataclass
class EMAConfig:
    start: float = 0.996  # target momentum at step 0
    end: float = 1.0  # target momentum at the last step
    schedule: str = "cosine"  # cosine | linear | constant


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate, reached after warmup
    start_lr: float = 0.0  # learning rate at step 0 (linear warmup from here)
    min_lr: float = 0.0  # learning rate at the last step (cosine decay to here)
    warmup_steps: int = 0
    weight_decay: float = 0.05  # at step 0; biases and norms are never decayed
    weight_decay_end: float | None = None  # cosine schedule to this value; None keeps it constant
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip_norm: float | None = None  # clip the global gradient norm
    grad_clip_value: float | None = None  # clamp each gradient element to [-v, v]
    fused: bool = True  # AdamW's fused kernel on CPU and CUDA (same update up to float rounding)


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimizer steps; with max_epochs, the most the run may take
    # Steps from the data: this many passes over the training split, never fewer than
    # `min_steps` nor more than `max_steps` optimizer steps (`max_steps` wins where they
    # disagree; None: always `max_steps`). Warm-up shrinks with the run (`polyjepa.budget`).
    max_epochs: float | None = None
    min_steps: int = 1
    batch_size: int = 64  # per process, per micro-batch
    accumulate: int = 1  # micro-batches per optimizer step
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # fp32 | bf16 | fp16 | auto (bf16 on CUDA, and on a CPU whose native bf16 measures faster
    # than fp32: polyjepa.precision)
    precision: str = "fp32"
    # torch.compile the encoders in place (graphs dynamo cannot compile run eagerly, logged)
    compile: bool = False
    # 2-D convolution weights (and so their activations) in channels-last memory, oneDNN's and
    # cuDNN's fast layout: 1.2-1.5x faster steps for the CNN demos on CPU. Not bit-exact: PyTorch's
    # channels-last CPU BatchNorm sums its statistics in fp32 (~3e-5 relative error, 4e-7
    # contiguous; TF32, PyTorch's CUDA default for convolutions, ~1e-3). No effect without 4-D weights
    channels_last: bool = True
    # CPU: glibc's malloc keeps freed memory for reuse instead of unmapping every large tensor on
    # free (process-wide; the same results, fewer page faults: polyjepa.allocator)
    reuse_memory: bool = True
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 500  # steps; the last step always saves
    log_every: int = 10  # steps between metrics.jsonl rows
    monitor_every: int = 100  # steps between collapse monitors (embedding std, RankMe)
    collapse_std: float = 0.01  # warn when the mean per-dimension std of target embeddings falls below
    collapse_rank: float = 0.05  # warn when RankMe / embedding width falls below
    auto_resume: bool = True  # an --out holding a checkpoint of the same recipe resumes from it
    skip_nonfinite: bool = False  # skip (not stop at) steps with a NaN/inf loss or gradient
    sync_batchnorm: bool = True  # under DDP, BatchNorm statistics over the global batch (BYOL)
    progress: bool = True  # tqdm progress bar
    tensorboard: bool = False  # also log to TensorBoard (needs the `tensorboard` extra)
    # Experiment trackers beside metrics.jsonl: any of tensorboard, wandb, mlflow (each an extra;
    # `polyjepa.trackers`): the resolved recipe as parameters, every metric row, the report.
    loggers: list[str] = field(default_factory=list)
    # Online probe: every this many steps (None: off) fit a kNN and a closed-form ridge classifier
    # on the frozen online encoder's embeddings of (at most `probe_samples`) training samples,
    # score them on the validation split (`data.val_fraction`), log `probe/knn`, `probe/linear`,
    # and `probe/few_shot`: the label-efficiency probe (logistic regression) fitted on
    # `probe_shots` training labels per class, mean validation accuracy over `probe_draws` draws.
    probe_every: int | None = None
    probe_samples: int = 2000  # cap on the training and on the validation samples probed
    probe_shots: int = 5
    probe_draws: int = 10
    # Encoders kept along the way (`checkpoints/encoder_step_N.pt`, for learning curves with
    # `polyjepa eval RUN --checkpoint N`): at these steps, and every `keep_every` steps.
    keep_checkpoints: list[int] = field(default_factory=list)
    keep_every: int | None = None
    # Which encoder `encoder.pt` holds: "last" (the last step's), "val_probe" (the best online
    # few-shot probe, `probe/few_shot`, on the validation split) or "rankme" (the highest RankMe
    # of the training samples' embeddings, label-free). Candidates: step 0 (the random
    # initialisation), every `probe_every` steps (at least 4 evenly spread through the run) and
    # the last step; a tie (accuracy, then the all-label ridge probe's squared error) goes to the
    # earlier step. `val_probe`
    # falls back to `rankme`, saying so, when the validation split has fewer than 3 labelled
    # samples of some class (`polyjepa.selection`).
    select: str = "last"


@dataclass
class EvalConfig:
    batch_size: int = 256
    pooling: str = "mean"  # mean | flatten | prefix | mean_max | mean_plus_max | last
    knn_k: int = 20
    max_train: int | None = None  # subsample the probe's training split (seeded) when large
    seed: int = 0
    # + svm, few_shot, label_efficiency, and the modality's own (e.g. forecast)
    protocols: list[str] = field(default_factory=lambda: ["linear_probe", "knn"])
    svm_c: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.012, 0.03, 0.1, 0.3, 1.0])
    few_shot_ways: int | None = None  # None: min(5, number of classes)
    few_shot_shots: list[int] = field(default_factory=lambda: [10, 20])
    few_shot_queries: int = 20  # test samples per class and episode (fewer if a class has fewer)
    few_shot_episodes: int = 10
    # Random initialisations of the encoder's architecture probed as the random-init baseline
    # (seeds train.seed + 1, + 2, ...); every protocol reports their mean (and each one).
    init_seeds: int = 3
    # Which split the probes score on: "test", or "val" (the validation split carved by
    # `data.val_fraction`; choose settings here, read the test split once at the end).
    split: str = "test"
    # label_efficiency protocol: labelled budgets of `shots` examples per class and `fractions`
    # of the training labels, each drawn `draws` times (seeded; the same subsets for every encoder).
    shots: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20])
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    draws: int = 10


@dataclass
class FinetuneConfig:
    """`polyjepa finetune`: the exported encoder + a linear head, trained end to end on labels."""

    max_steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-4  # peak, for the encoder and the head
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip_norm: float | None = 1.0
    pooling: str | None = None  # None: eval.pooling
    # Regularized masking (A-JEPA): this share of each sample's tokens is replaced by a learned
    # mask token during fine-tuning (never at test time); needs a tokenizer. 0 turns it off.
    mask_ratio: float = 0.0
    # How masked tokens are regularized: "token" (replaced by the mask token, the reading
    # of A-JEPA) or "attention" (kept as queries, hidden as keys in every layer: the reading of
    # the paper's "barred from contributing to attention").
    mask_mode: str = "token"
    seed: int = 0


@dataclass
class RecipeConfig:
    modality: str
    model: ModelConfig
    objective: Spec  # {"name": "jepa" | "byol", **kwargs}
    data: Any = None  # the modality's data schema (validated by the plugin)
    masker: Spec | None = None  # JEPA: {"name": "modality.masker", **kwargs}
    augmentations: list[Spec] = field(default_factory=list)  # BYOL views
    # LeJEPA's local views (objective.views - objective.global_views of them): their own chain,
    # e.g. smaller crops; without it every view comes from `augmentations`
    local_augmentations: list[Spec] = field(default_factory=list)
    regularizers: list[Spec] = field(default_factory=list)
    ema: EMAConfig = field(default_factory=EMAConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    data_root: str | None = None  # relative data paths resolve here; default $POLYJEPA_DATA_ROOT
    paper: str = ""  # citation of the method this recipe reproduces
    # demo: sized to train in minutes on a CPU (what `polyjepa recipes` marks); paper: the
    # published run's length and size
    scale: str = "paper"
    synthetic: bool = False  # train on the modality's built-in synthetic data instead of `data`


def _type_name(tp: Any) -> str:
    if tp is dict or typing.get_origin(tp) is dict:
        return "a mapping"
    if typing.get_origin(tp) is list:
        return "a list"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against type ``tp`` (dataclasses recursively); return the typed value.
    The recipe's sections and component options (`is_plain_type` hints) use the same rules:
    `1e-3`, which YAML reads as a string, becomes a float; an int where a float is expected too.

    Raises:
        ConfigError: naming `source`, `key`, the expected type and the value.
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key, source)
            except ConfigError:
                continue
        names = [_type_name(o) for o in options if o is not type(None)]
        nullable = " (or null)" if type(None) in options else ""
        raise ConfigError(f"{source}: {key}: expected {' or '.join(names)}{nullable}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return from_dict(typing.cast(type, tp), value, source, prefix=f"{key}.")
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is tuple and typing.get_args(tp)[-1:] == (Ellipsis,):  # tuple[int, ...]
        (item, _) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        return tuple(coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{source}: {key}: expected {len(args)} values, got {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in pairs)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{source}: {key}: expected int, got {value!r}")
    if isinstance(value, tp):
        return value
    raise ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {value!r}")


def is_plain_type(tp: Any) -> bool:
    """Whether a type hint describes plain recipe data (numbers, strings, booleans, None, and
    lists, tuples, mappings and unions of them) that `coerce` can check."""
    if tp in (int, float, bool, str, type(None), Any, dict, list):
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        return all(is_plain_type(a) for a in typing.get_args(tp) if a is not Ellipsis)
    return False


def did_you_mean(key: str, options: Iterable[str], prefix: str = "") -> str:
    """` (did you mean 'train.max_steps'?)` for the closest option, or "" when none is close."""
    close = difflib.get_close_matches(str(key), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def from_dict(cls: type, raw: dict, source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``raw``; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}'{did_you_mean(unknown[0], known, prefix)}"
            f"; valid keys here: {', '.join(sorted(known))}"
        )
    values = {}
    for name, f in known.items():
        if name in raw:
            values[name] = coerce(raw[name], hints[name], prefix + name, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{prefix}{name}'")
    return cls(**values)


def to_dict(obj: Any) -> Any:
    """Dataclasses -> plain dicts/lists (tuples become lists), for YAML and checkpoints."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.max_steps=10"`` -> ``(["train", "max_steps"], 10)``; the value is read as YAML."""
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise ConfigError(f"command line: override '{text}' is not of the form key.sub=value")
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set each ``key.sub=value`` in (a copy of) the raw recipe dict.

    A path through a key the recipe does not have is created; schema validation then rejects it
    if no schema knows it, naming the key and "command line".
    """
    raw = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"command line: '{text}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


def reset_dataset_keys(raw: dict, overrides: list[str], schema: type | None
                       ) -> tuple[dict, list[str]]:
    """When `overrides` give `data.path`, the recipe's settings of its own dataset (the data
    schema's `dataset_keys`) go back to their neutral values unless `overrides` give them too.

    Returns:
        The recipe dict to apply `overrides` to, and the keys reset (`data.test_path`, ...).
    """
    given = [tuple(parse_override(o)[0]) for o in overrides]
    data = raw.get("data") or {}
    if ("data", "path") not in given or not isinstance(data, dict) or not (
            isinstance(schema, type) and issubclass(schema, DataConfig)):
        return raw, []
    defaults = {f.name: f.default for f in dataclasses.fields(schema)
                if f.default is not dataclasses.MISSING}
    data, reset = dict(data), []
    for key, neutral in schema.dataset_keys.items():
        value = data.get(key, defaults.get(key, neutral))  # what the recipe would use
        if value != neutral and not any(g[:2] == ("data", key) for g in given):
            data[key] = neutral
            reset.append(f"data.{key}={neutral!r}")
    return {**raw, "data": data}, reset


def check_override_scope(overrides: list[str], sections: tuple[str, ...], command: str) -> None:
    """Commands that reuse a finished run (eval, finetune, import) may change only `sections`.

    Raises:
        ConfigError: naming the command, the sections it accepts and the first other override.
    """
    bad = [o for o in overrides if o.partition(".")[0] not in sections]
    if bad:
        names = [f"{s}.*" for s in sections]
        allowed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise ConfigError(f"{command}: only {allowed} may be overridden, got {bad[0]}")


def recipes_dir() -> Path:
    """Folder of the recipes shipped with polyjepa."""
    return Path(str(importlib.resources.files("polyjepa.recipes")))


def list_recipes() -> dict[str, Path]:
    """Shipped recipe names -> files."""
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml"))}


def find_recipe(name_or_path: str) -> Path:
    """A shipped recipe name or a path to a YAML file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml"):
        raise ConfigError(f"recipe file not found: {path}")
    shipped = list_recipes()
    if name_or_path not in shipped:
        raise ConfigError(
            f"unknown recipe '{name_or_path}'; shipped recipes: {', '.join(shipped)} "
            "(or give a path to a .yaml file)"
        )
    return shipped[name_or_path]


def deep_merge(base: dict, update: dict) -> dict:
    """`update` laid over `base`: mappings merge key by key, anything else replaces. A component
    spec naming another component (`name` differs) replaces the base's spec whole, since the
    options of one component mean nothing to another."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and not (
                "name" in value and "name" in old and value["name"] != old["name"]):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_recipe(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a recipe file; a `base: NAME_OR_PATH` key lays this file over that recipe."""
    raw = read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a recipe name or path, got {base!r}")
    local = path.parent / base
    base_path = local if local.suffix in (".yaml", ".yml") and local.is_file() else find_recipe(base)
    if base_path.resolve() in _seen:
        raise ConfigError(f"{path}: base: recipes inherit from each other in a cycle")
    return deep_merge(read_recipe(base_path, (*_seen, path.resolve())), raw)


def read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping, got {type(raw).__name__}")
    return raw


def validate(raw: dict, source: str, data_schema: type | None) -> RecipeConfig:
    """Validate a raw recipe dict; the ``data`` section against the modality's schema."""
    cfg = from_dict(RecipeConfig, raw, source)
    if cfg.data is not None and not isinstance(cfg.data, dict):
        raise ConfigError(f"{source}: data: expected a mapping of data options, got {cfg.data!r}")
    if data_schema is not None:
        cfg.data = from_dict(data_schema, cfg.data or {}, source, prefix="data.")
    elif cfg.data:
        raise ConfigError(f"{source}: modality '{cfg.modality}' takes no data section")
    check_values(cfg, source)
    return cfg


CHOICES = {
    "ema.schedule": ("cosine", "linear", "constant"),
    "train.precision": ("fp32", "bf16", "fp16", "auto"),
    "train.select": ("last", "val_probe", "rankme"),
    "eval.pooling": POOLINGS,
    "eval.split": ("test", "val"),
    "scale": ("paper", "demo"),
}
AT_LEAST_ONE = ("max_steps", "min_steps", "batch_size", "accumulate", "checkpoint_every", "log_every",
                "monitor_every")


def is_recipe_key(key: str, data_schemas: Sequence[type] = ()) -> bool:
    """Whether a dotted `key` is one a recipe or an override may set: a field of the recipe's
    sections (`train.batch_size`), anything under a component spec (`model.encoder.dim`,
    `objective.loss`), or a field of one of `data_schemas` (`data.label_regex`)."""
    def walk(cls: type, parts: list[str]) -> bool:
        if not parts:
            return True
        if not dataclasses.is_dataclass(cls):
            return cls is dict or typing.get_origin(cls) is dict  # a component spec
        names = {f.name for f in dataclasses.fields(cls)}
        if parts[0] not in names:
            return False
        if cls is RecipeConfig and parts[0] == "data":
            return any(walk(schema, parts[1:]) for schema in data_schemas)
        return walk(_field_type(cls, parts[0]), parts[1:])

    return walk(RecipeConfig, key.split("."))


def _field_type(cls: type, name: str) -> Any:
    tp = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and args else tp


def path_keys(cfg: RecipeConfig) -> tuple[str, ...]:
    """The data section's keys holding paths (`DataConfig.path_keys`), none for a data schema
    that does not extend `DataConfig`."""
    return cfg.data.path_keys if isinstance(cfg.data, DataConfig) else ()


def unlabelled_paths(cfg: RecipeConfig) -> list[str]:
    """`data.unlabelled` as a list (empty for a data schema without it)."""
    if not isinstance(cfg.data, DataConfig):
        return []
    value = cfg.data.unlabelled
    if isinstance(value, str):
        return [value] if value else []
    return list(value)


def val_fraction(cfg: RecipeConfig) -> float:
    """`data.val_fraction`, 0 for a data schema without it."""
    return cfg.data.val_fraction if isinstance(cfg.data, DataConfig) else 0.0


def _check_split_keys(cfg: RecipeConfig, source: str) -> None:
    """Validation split, online probe, kept checkpoints and label-efficiency budgets."""
    fraction, t, e = val_fraction(cfg), cfg.train, cfg.eval
    if not 0 <= fraction < 1:
        raise ConfigError(f"{source}: data.val_fraction must lie in [0, 1), got {fraction}")
    if isinstance(cfg.data, DataConfig) and cfg.data.task not in TASKS:
        raise ConfigError(f"{source}: data.task must be one of {', '.join(TASKS)}, got "
                          f"{cfg.data.task!r}")
    if t.probe_every is not None:
        if t.probe_every < 1:
            raise ConfigError(f"{source}: train.probe_every must be >= 1 (or null: off)")
        if fraction == 0:
            raise ConfigError(f"{source}: train.probe_every scores on the validation split; set "
                              "data.val_fraction (e.g. data.val_fraction=0.1) or "
                              "train.probe_every=null")
    if t.select != "last" and t.probe_every is None:
        raise ConfigError(f"{source}: train.select={t.select} picks among the encoders probed every "
                          "train.probe_every steps; set train.probe_every (e.g. "
                          "train.probe_every=100) or train.select=last")
    if t.select == "val_probe" and fraction == 0:
        raise ConfigError(f"{source}: train.select=val_probe scores on the validation split; set "
                          "data.val_fraction (e.g. data.val_fraction=0.1) or train.select=rankme")
    if t.probe_samples < 2:
        raise ConfigError(f"{source}: train.probe_samples must be >= 2, got {t.probe_samples}")
    if any(s < 1 for s in t.keep_checkpoints) or (t.keep_every is not None and t.keep_every < 1):
        raise ConfigError(f"{source}: train.keep_checkpoints and train.keep_every take steps >= 1")
    if e.split == "val" and fraction == 0:
        raise ConfigError(f"{source}: eval.split=val needs a validation split; set "
                          "data.val_fraction (e.g. data.val_fraction=0.1)")
    if e.init_seeds < 1 or e.draws < 1:
        raise ConfigError(f"{source}: eval.init_seeds and eval.draws must be >= 1")
    if any(k < 1 for k in e.shots) or any(not 0 < p <= 1 for p in e.fractions):
        raise ConfigError(f"{source}: eval.shots take counts >= 1 and eval.fractions values in "
                          "(0, 1]")


def check_values(cfg: RecipeConfig, source: str) -> None:
    """Reject values no run can use, naming the key."""
    for key in AT_LEAST_ONE:
        if getattr(cfg.train, key) < 1:
            raise ConfigError(f"{source}: train.{key} must be >= 1, got {getattr(cfg.train, key)}")
    if cfg.train.max_epochs is not None and cfg.train.max_epochs <= 0:
        raise ConfigError(f"{source}: train.max_epochs must be > 0 (or null: train.max_steps "
                          f"steps), got {cfg.train.max_epochs}")
    if cfg.train.num_workers < 0:
        raise ConfigError(f"{source}: train.num_workers must be >= 0")
    check_loggers(cfg.train.loggers, source)
    for key, options in CHOICES.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value not in options:
            raise ConfigError(f"{source}: {key}: unknown value '{value}'; choose from {', '.join(options)}")
    device = cfg.train.device
    if device != "auto" and not re.fullmatch(r"(cpu|mps|cuda|xpu)(:\d+)?", device):
        raise ConfigError(
            f"{source}: train.device: unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps")
    if not 0 <= cfg.ema.start <= 1 or not 0 <= cfg.ema.end <= 1:
        raise ConfigError(f"{source}: ema.start and ema.end must lie in [0, 1]")
    _check_split_keys(cfg, source)
    ft = cfg.finetune
    if ft.max_steps < 1 or ft.batch_size < 1:
        raise ConfigError(f"{source}: finetune.max_steps and finetune.batch_size must be >= 1")
    if not 0 <= ft.mask_ratio < 1:
        raise ConfigError(f"{source}: finetune.mask_ratio must lie in [0, 1), got {ft.mask_ratio}")
    if ft.mask_mode not in ("token", "attention"):
        raise ConfigError(f"{source}: finetune.mask_mode: unknown value '{ft.mask_mode}'; choose "
                          "from token, attention")
    if ft.pooling is not None and ft.pooling not in CHOICES["eval.pooling"]:
        raise ConfigError(f"{source}: finetune.pooling: unknown value '{ft.pooling}'; choose from "
                          f"{', '.join(CHOICES['eval.pooling'])}")
    if cfg.objective.get("name") == "jepa" and cfg.masker is None:
        raise ConfigError(f"{source}: masker: the jepa objective needs a masker (e.g. random_subsets)")
