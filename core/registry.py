"""Plugin discovery through Python entry points.

Two entry-point groups:

* ``polyjepa.modalities``: ``name = "pkg.module:plugin"`` -> a :class:`ModalityPlugin`.
  polyjepa's own modalities register here exactly as a third party would.
* ``polyjepa.components``: ``modality.name = "pkg.module:factory"`` -> a tokenizer, masker,
  augmentation or encoder factory added to an existing modality. The factory's ``kind`` attribute
  (``"tokenizer"``, ``"masker"``, ...) says which slot it fills; without one it may fill any slot.

Core components (the transformer encoder, predictors, objectives) live in :data:`CORE` and are
named without a modality prefix. Entry points are loaded lazily on first lookup; a plugin that
fails to import is recorded with its entry-point name and distribution and does not stop the others.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import os
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polyjepa.errors import RegistryError

if TYPE_CHECKING:  # the protocols import torch; listing plugins must not
    from polyjepa.contracts import (
        Baseline,
        EvalProtocol,
        Importer,
        LoadData,
        LoadFile,
        RawFeatures,
        Synthetic,
    )

MODALITY_GROUP = "polyjepa.modalities"
DISABLE_AUTOLOAD_ENV = "POLYJEPA_DISABLE_PLUGIN_AUTOLOAD"
PLUGINS_ENV = "POLYJEPA_PLUGINS"
"""With `POLYJEPA_DISABLE_PLUGIN_AUTOLOAD=1`, only the entry points named in `POLYJEPA_PLUGINS`
(comma-separated: modality names, `modality.component` names) are loaded (pytest's convention):
to run without a plugin that breaks on import, or to isolate one."""
COMPONENT_GROUP = "polyjepa.components"
KINDS = ("frontend", "tokenizer", "masker", "augmentation", "encoder", "predictor", "decoder",
         "objective", "regularizer")


@dataclass
class Component:
    """A named factory and where it came from."""

    name: str
    factory: Callable[..., Any]
    kind: str | None
    origin: str  # distribution name, or "polyjepa" for core components


@dataclass
class ModalityPlugin:
    """Everything polyjepa needs from a modality.

    The callables' types are in `polyjepa.contracts` (`LoadData`, `Synthetic`, ...).

    Attributes:
        name: the modality's name, as recipes write it (``modality: tabular``).
        data_config: dataclass of the recipe's ``data:`` section for this modality.
        load_data: ``(data_config, data_root) -> (train, test, meta)``: two datasets yielding
            ``(x, y)`` and a dict of plain values (feature counts, classes, ...) that factories
            may ask for by parameter name.
        synthetic: ``(n, seed) -> (train, test, meta)``: a small built-in dataset with learnable
            structure, for demos and tests.
        raw_features: ``(dataset) -> [N, F]`` tensor, the raw-feature baseline for probes.
        load_file: ``(data_config, path, data_root, meta) -> dataset``: read one more file with
            the preprocessing fitted on a run's training data (``meta``), for ``eval --data`` and
            ``embed``.
        components: built-in tokenizers, maskers, augmentations and encoders by name (no prefix).
        importers: converters of other frameworks' checkpoints by name (e.g. `byol_a_official`):
            `(loaded file, path) -> (recipe dict, meta, backbone state_dict)`, or None when the
            file is not theirs. `polyjepa.load_encoder` and `polyjepa import` use them.
        protocols: evaluations of this modality by name, run by `polyjepa eval` when listed in
            `eval.protocols`: `(run_dir=, recipe=, train_set=, test_set=, device=) -> dict`
            (JSON-ready; a `table` entry, a list of row dicts, is printed as a table).
        baselines: the field's label-free baselines by name (time series: ``minirocket``),
            each fitted on a run's training split without its labels (`contracts.Baseline`:
            ``(dataset, rows, seed) -> (dataset) -> [N, F]``); `polyjepa eval` probes them
            beside ``raw_features``.
    """

    name: str
    data_config: type
    load_data: LoadData
    synthetic: Synthetic
    raw_features: RawFeatures
    load_file: LoadFile
    components: dict[str, Callable[..., Any]] = field(default_factory=dict)
    importers: dict[str, Importer] = field(default_factory=dict)
    protocols: dict[str, EvalProtocol] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)


CORE: dict[tuple[str, str], Component] = {}
"""Core components by ``(kind, name)``: an objective and a predictor may both be called "jepa".
Filled by the modules of :data:`CORE_MODULES` as they are imported (:func:`core_components`)."""

CORE_MODULES = ("polyjepa.encoders", "polyjepa.maskers", "polyjepa.objectives",
                "polyjepa.predictors", "polyjepa.regularizers")


def core_components() -> dict[tuple[str, str], Component]:
    """:data:`CORE`, after importing the modules that register into it."""
    for module in CORE_MODULES:
        importlib.import_module(module)
    return CORE


def register(name: str, kind: str) -> Callable[[Callable], Callable]:
    """Decorator registering a core component of ``kind`` under ``name``."""

    def wrap(factory: Callable) -> Callable:
        if (kind, name) in CORE:
            raise RegistryError(f"core {kind} '{name}' registered twice")
        factory.kind = kind  # type: ignore[attr-defined]
        CORE[kind, name] = Component(name, factory, kind, "polyjepa")
        return factory

    return wrap


@dataclass
class _Loaded:
    modalities: dict[str, tuple[ModalityPlugin, str]] = field(default_factory=dict)
    components: dict[str, dict[str, Component]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


_state: _Loaded | None = None


def reset() -> None:
    """Forget loaded plugins (the next lookup reloads entry points, e.g. after an install)."""
    global _state
    _state = None


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "<unknown distribution>"


def raised_at(exc: BaseException) -> str:
    """` at file:line` where an exception was raised (its innermost frame), or "" without a
    traceback: plugin failures and component constructors name the line to look at."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _allowed(name: str) -> bool:
    """Whether an entry point is loaded (every one, unless autoloading is disabled)."""
    if os.environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0"):
        return True
    named = {n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()}
    return name in named or name.partition(".")[0] in named  # a listed modality's components


def _unique_entry_points(group: str) -> list[metadata.EntryPoint]:
    """Entry points of ``group``; the same name bound twice to different targets is an error."""
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        if not _allowed(ep.name):
            continue
        other = seen.get(ep.name)
        if other is None:
            seen[ep.name] = ep
        elif other.value != ep.value:
            raise RegistryError(
                f"entry point '{ep.name}' in group {group} is defined twice: "
                f"'{other.value}' by {_dist_name(other)} and '{ep.value}' by {_dist_name(ep)}; "
                "uninstall one of the two distributions"
            )
    return list(seen.values())


def _load() -> _Loaded:
    global _state
    if _state is not None:
        return _state
    state = _Loaded()
    for ep in _unique_entry_points(MODALITY_GROUP):
        origin = _dist_name(ep)
        try:
            plugin = ep.load()
            if not isinstance(plugin, ModalityPlugin):
                raise TypeError(f"expected a ModalityPlugin, got {type(plugin).__name__}")
        except Exception as exc:  # a broken plugin must not break the others
            state.failures.append(f"modality '{ep.name}' ({origin}, {ep.value}): {exc!r}"
                                  + raised_at(exc))
            continue
        state.modalities[ep.name] = (plugin, origin)
        state.components[ep.name] = {
            name: Component(name, f, getattr(f, "kind", None), origin)
            for name, f in plugin.components.items()
        }
    for ep in _unique_entry_points(COMPONENT_GROUP):
        origin = _dist_name(ep)
        modality, _, name = ep.name.partition(".")
        try:
            if not name:
                raise ValueError("component entry points are named 'modality.name'")
            if modality not in state.components:
                raise ValueError(f"modality '{modality}' is not installed")
            if name in state.components[modality]:
                prior = state.components[modality][name].origin
                raise ValueError(f"'{modality}.{name}' is already provided by {prior}")
            factory = ep.load()
        except Exception as exc:
            state.failures.append(f"component '{ep.name}' ({origin}, {ep.value}): {exc!r}"
                                  + raised_at(exc))
            continue
        kind = getattr(factory, "kind", None)
        state.components[modality][name] = Component(name, factory, kind, origin)
    for failure in state.failures:
        warnings.warn(f"polyjepa plugin failed to load: {failure}", stacklevel=2)
    _state = state
    return state


def _unknown(what: str, name: str, available: list[str], where: str = "") -> RegistryError:
    close = difflib.get_close_matches(name, available, n=1)
    hint = f"; did you mean '{close[0]}'" if close else ""
    failures = _load().failures
    broken = f"; plugins that failed to load: {failures}" if failures else ""
    listed = ", ".join(sorted(available)) or "none"
    return RegistryError(f"unknown {what} '{name}'{where}{hint}; available: {listed}{broken}")


def list_modalities() -> dict[str, str]:
    """Installed modality names -> distribution they come from."""
    return {name: origin for name, (_, origin) in _load().modalities.items()}


def get_modality(name: str) -> ModalityPlugin:
    """The plugin of modality ``name``; raises RegistryError listing the installed ones."""
    state = _load()
    if name not in state.modalities:
        raise _unknown("modality", name, list(state.modalities))
    return state.modalities[name][0]


def list_components(kind: str | None = None) -> list[tuple[str, Component]]:
    """``(qualified name, component)`` pairs: core ones bare, modality ones as ``modality.name``.

    With ``kind``, only components of that kind and those that declare no kind.
    """
    rows = [(name, comp) for (_, name), comp in core_components().items()]
    for modality, comps in _load().components.items():
        rows += [(f"{modality}.{name}", comp) for name, comp in comps.items()]
    if kind is not None:
        rows = [(n, c) for n, c in rows if c.kind in (kind, None)]
    return sorted(rows, key=lambda row: row[0])


def get_component(qualified: str, kind: str, modality: str | None = None) -> Component:
    """Look up ``name`` (core) or ``modality.name`` for the slot ``kind``.

    Raises:
        RegistryError: "unknown tokenizer 'x' for modality 'tabular'; available: ...".
    """
    prefix, dot, name = qualified.partition(".")
    if dot:
        state = _load()
        if prefix not in state.components:
            raise _unknown("modality", prefix, list(state.modalities))
        found = state.components[prefix].get(name)
        where = f" for modality '{prefix}'"
    else:
        found, where = core_components().get((kind, qualified)), ""
    if found is None or found.kind not in (kind, None):
        available = [n for n, c in list_components(kind) if modality is None or
                     "." not in n or n.startswith(f"{modality}.")]
        raise _unknown(kind, qualified, available, where)
    return found


def list_importers() -> dict[str, Callable[..., Any]]:
    """Checkpoint importers of every installed modality, by name."""
    found: dict[str, Callable[..., Any]] = {}
    for name, (plugin, _) in _load().modalities.items():
        for key, importer in plugin.importers.items():
            if key in found:
                raise RegistryError(f"checkpoint importer '{key}' is defined by two modalities "
                                    f"(the second: '{name}')")
            found[key] = importer
    return found


def plugin_failures() -> list[str]:
    """Descriptions of plugins and components that failed to load."""
    return list(_load().failures)
