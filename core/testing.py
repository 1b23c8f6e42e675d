"""`check_modality`: the conformance suite a modality plugin passes — polyjepa runs it over every
installed modality (third-party ones included), and a plugin author runs it in their own tests:

    from polyjepa.testing import check_modality
    check_modality("mymod")                       # or the ModalityPlugin object

It checks, on the plugin's synthetic data: `synthetic()` works with its defaults; `meta` is plain
data (it survives `torch.save` -> `torch.load(weights_only=True)`, as checkpoints need); datasets
yield collatable `(x, y)` with integer labels; `raw_features` is `[N, F]`; and, for each recipe
given (default: the shipped recipes of the modality), that the recipe builds on that data, trains
two steps on the CPU, exports an encoder and embeds the test split. Problems are collected and
raised together, so one run lists everything a plugin still has to fix.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyjepa.registry import ModalityPlugin, get_modality

QUICK = ["synthetic=true", "train.max_steps=2", "train.batch_size=4", "train.progress=false",
         "train.device=cpu", "train.probe_every=null", "train.select=last",
         "train.keep_checkpoints=[]", "train.keep_every=null", "train.precision=fp32",
         "train.num_workers=0"]


class ConformanceError(AssertionError):
    """What a plugin does not yet honour, one line per problem."""


def check_modality(plugin: str | ModalityPlugin, recipes: list[str] | None = None) -> list[str]:
    """Run the conformance checks; returns the recipes that trained.

    Args:
        plugin: an installed modality's name, or a `ModalityPlugin`.
        recipes: recipe names or YAML paths to build and train on the synthetic data (default:
            every shipped recipe of the modality).

    Raises:
        ConformanceError: listing every problem found.
    """
    from polyjepa.config import list_recipes, read_recipe

    plugin = get_modality(plugin) if isinstance(plugin, str) else plugin
    problems: list[str] = []
    try:
        train, test, meta = plugin.synthetic()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
        raise ConformanceError(f"{plugin.name}: synthetic() with its defaults: {exc!r}") from exc
    problems += _check_meta(plugin.name, meta)
    for split, dataset in (("train", train), ("test", test)):
        problems += _check_samples(plugin.name, split, dataset)
    problems += _check_raw_features(plugin, test)
    if recipes is None:
        recipes = [name for name, path in list_recipes().items()
                   if read_recipe(path).get("modality") == plugin.name]
    trained = []
    for recipe in recipes:
        found = _check_recipe(plugin.name, recipe)
        problems += found
        if not found:
            trained.append(recipe)
    if problems:
        raise ConformanceError("\n".join(problems))
    return trained


def _check_meta(name: str, meta: dict) -> list[str]:
    if not isinstance(meta, dict):
        return [f"{name}: synthetic() meta: expected a dict, got {type(meta).__name__}"]
    bad = [f"meta[{key!r}] ({type(value).__name__})" for key, value in meta.items()
           if not _loads_safely(value)]
    if bad:
        return [f"{name}: meta is not plain data (checkpoints load it with "
                f"torch.load(weights_only=True)): {', '.join(bad)}; keep numbers, strings, "
                "lists, dicts and tensors there"]
    return []


def _loads_safely(value: Any) -> bool:
    buffer = io.BytesIO()
    try:
        torch.save(value, buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)
    except Exception:  # noqa: BLE001 - torch's unpickler raises several types
        return False
    return True


def _check_samples(name: str, split: str, dataset: Any) -> list[str]:
    from polyjepa.data import eval_collate

    if len(dataset) < 2:
        return [f"{name}: synthetic {split} split has {len(dataset)} samples"]
    try:
        batch = eval_collate([dataset[0], dataset[1]])
    except Exception as exc:  # noqa: BLE001
        return [f"{name}: synthetic {split} samples do not collate into a batch: {exc!r}"]
    y = dataset[0][1]
    if not (isinstance(y, int | np.integer) or (torch.is_tensor(y) and not y.is_floating_point()
                                                and y.numel() == 1)):
        return [f"{name}: {split} labels must be integers (class index, -1 for none), got {y!r}"]
    if batch.y.shape != (2,):
        return [f"{name}: {split} labels collate to shape {tuple(batch.y.shape)}, expected (2,)"]
    return []


def _check_raw_features(plugin: ModalityPlugin, dataset: Any) -> list[str]:
    try:
        raw = plugin.raw_features(dataset)
    except Exception as exc:  # noqa: BLE001
        return [f"{plugin.name}: raw_features(test split): {exc!r}"]
    if not torch.is_tensor(raw):
        return [f"{plugin.name}: raw_features must return a tensor [N, F], got "
                f"{type(raw).__name__}"]
    if tuple(raw.shape[:1]) != (len(dataset),) or raw.ndim != 2:
        return [f"{plugin.name}: raw_features must be [N, F] with N = {len(dataset)}, got "
                f"{tuple(raw.shape)}"]
    return []


def _check_recipe(name: str, recipe: str) -> list[str]:
    from polyjepa.build import load_datasets, load_recipe
    from polyjepa.hub import load_encoder
    from polyjepa.probes import embed
    from polyjepa.train import pretrain

    with tempfile.TemporaryDirectory() as tmp:
        try:
            run = pretrain(recipe, QUICK, Path(tmp) / "run")
            encoder = load_encoder(run)
            quick = load_recipe(recipe, QUICK)
            test = load_datasets(quick)[1]
            x, y = embed(encoder, test, quick.cfg.eval.pooling, 8)
        except Exception as exc:  # noqa: BLE001
            return [f"{name}: recipe {recipe} on the synthetic data (2 steps): {exc!r}"]
    if x.shape[0] != len(test) or not np.isfinite(x).all():
        return [f"{name}: recipe {recipe}: embeddings of shape {x.shape} for {len(test)} "
                "samples, or not finite"]
    return []
