"""What a recipe is, from the command line: `polyjepa recipes` (one line per shipped recipe: its
modality, scale, data and length) and `polyjepa recipes NAME` (its header, then every key with
its value, type and default; `--time` measures a few steps on this machine)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polyjepa import config as C

SECTIONS = ("data", "model", "objective", "masker", "augmentations", "regularizers", "ema",
            "optim", "train", "eval", "finetune")


def summary_rows() -> list[dict[str, str]]:
    """One row per shipped recipe: `name`, `modality`, `scale` (demo: sized to train in minutes
    on a CPU; paper: the published run), `data`, `steps` (steps x batch; with `(Eep,>=M)` for a
    length of E epochs of the data, at least M and at most that many steps: `train.max_epochs`)
    and `paper`. Read from the YAML alone: no plugin is imported."""
    rows = []
    train = C.TrainConfig()
    for name, path in C.list_recipes().items():
        raw = C.read_recipe(path)
        data = raw.get("data") or {}
        given = raw.get("train", {})
        steps = given.get("max_steps", train.max_steps)
        batch = given.get("batch_size", train.batch_size)
        epochs = given.get("max_epochs", train.max_epochs)
        length = f"{steps}x{batch}"
        if epochs is not None:
            length += f" ({epochs:g}ep,>={given.get('min_steps', train.min_steps)})"
        rows.append({"name": name, "modality": str(raw.get("modality", "?")),
                     "scale": str(raw.get("scale", "paper")),
                     "data": "synthetic" if raw.get("synthetic") else _data_name(data),
                     "steps": length, "paper": str(raw.get("paper", ""))})
    return rows


def _data_name(data: dict) -> str:
    path = str(data.get("path") or "your data (data.path=...)")
    if data.get("moving_mnist"):
        return f"Moving MNIST from {path}"
    return path


def header(path: Path) -> list[str]:
    """The comment lines a recipe file starts with (its documentation), without the `#`."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return lines


def describe(name_or_path: str, overrides: Sequence[str] = ()) -> str:
    """A recipe's header and every key it resolves to (its base and `overrides` applied):
    `key = value  (type, default D)`, with `*` where the recipe changes the default."""
    from polyjepa.build import load_recipe

    path = C.find_recipe(name_or_path)
    recipe = load_recipe(name_or_path, list(overrides))
    raw = C.read_yaml(path)
    lines = [f"# {path}", *(f"# {line}" for line in header(path))]
    if "base" in raw:
        lines.append(f"# (base: {raw['base']}; its header: polyjepa recipes {raw['base']})")
    cfg = recipe.cfg
    lines.append("")
    for key in ("modality", "paper", "scale", "synthetic", "data_root"):
        lines.append(_key_line(key, getattr(cfg, key), C.RecipeConfig, key))
    for section in SECTIONS:
        value = getattr(cfg, section)
        lines.append(f"{section}:")
        if dataclasses.is_dataclass(value):
            lines += _dataclass_lines(value, section)
        else:
            lines.append(f"  {section} = {value!r}  (component spec: name + its options)")
    return "\n".join(lines)


def _dataclass_lines(obj: Any, prefix: str) -> list[str]:
    lines = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            lines += _dataclass_lines(value, key)
        else:
            lines.append("  " + _key_line(key, value, type(obj), f.name))
    return lines


def _key_line(key: str, value: Any, cls: type, name: str) -> str:
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        default = "required"
    tp = typing.get_type_hints(cls)[name]
    kind = str(tp).replace("typing.", "") if typing.get_args(tp) else getattr(tp, "__name__", tp)
    mark = " " if C.to_dict(value) == C.to_dict(default) else "*"
    return f"{mark} {key} = {C.to_dict(value)!r}  ({kind}, default {C.to_dict(default)!r})"


def time_steps(name_or_path: str, overrides: Sequence[str] = (), steps: int = 20) -> dict:
    """Train `steps` steps of a recipe in a temporary folder and extrapolate to its whole run.

    Returns:
        `{"samples_per_s", "seconds_per_step", "max_steps", "epochs", "length", "estimated_minutes"}`,
        measured on the second half of the steps (the first half absorbs start-up); `max_steps`
        is the whole run's resolved length on this data (`polyjepa.budget`), `length` says how.
    """
    from polyjepa.budget import resolve_budget
    from polyjepa.build import load_recipe
    from polyjepa.train import pretrain

    recipe = load_recipe(name_or_path, list(overrides)).cfg
    cfg = recipe.train
    half = max(1, steps // 2)
    probe = ["train.probe_every=null", "train.keep_checkpoints=[]", "train.keep_every=null",
             "train.max_epochs=null", "train.min_steps=1", "train.select=last",
             f"train.max_steps={2 * half}", f"train.log_every={half}",
             f"train.checkpoint_every={10 * steps}", "train.progress=false"]
    with tempfile.TemporaryDirectory() as tmp:
        run = pretrain(name_or_path, [*overrides, *probe], Path(tmp) / "run")
        rows = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line]
        info = json.loads((run / "run.json").read_text())
    rate = json.loads(rows[-1])["samples_per_s"]
    per_step = info["batch_size"] * cfg.accumulate * info["world_size"] / rate
    budget = resolve_budget(cfg, recipe.optim.warmup_steps, info["pretraining_samples"],
                            info["batch_size"], info["world_size"])
    return {"samples_per_s": rate, "seconds_per_step": per_step, "max_steps": budget.steps,
            "epochs": budget.epochs,
            "length": budget.describe(info["pretraining_samples"], info["batch_size"]),
            "estimated_minutes": budget.steps * per_step / 60}
