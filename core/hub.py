"""Export a trained encoder and load it back for downstream use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from torch import nn

from polyjepa.build import build_backbone, load_datasets, recipe_from_dict
from polyjepa.checkpoint import cpu_state, load_file, load_state, save_atomic
from polyjepa.config import check_override_scope, to_dict
from polyjepa.encoders import Backbone
from polyjepa.errors import CheckpointError, ConfigError
from polyjepa.paths import check_output_folder, pin_paths
from polyjepa.registry import list_importers

ENCODER_FILE = "encoder.pt"
FORMAT = "polyjepa-encoder/1"


def export_encoder(backbone: nn.Module, config: dict, meta: dict, run_dir: Path,
                   name: str = ENCODER_FILE) -> Path:
    """Write `run_dir/name` (`encoder.pt`): weights, the resolved config and the data `meta` to
    rebuild."""
    path = run_dir / name
    save_atomic({"format": FORMAT, "state_dict": cpu_state(backbone), "config": config,
                 "meta": meta}, path)
    return path


def read_export(path: str | Path) -> tuple[dict, Path]:
    """The contents of an exported encoder (a run directory or its `encoder.pt`, a folder that
    `polyjepa export --format hf` wrote, or a Hub repository `org/name`) and its file."""
    from polyjepa.export import is_hf_folder, looks_like_repo, read_hf

    if is_hf_folder(Path(path)) or looks_like_repo(str(path)):
        return read_hf(path)
    path = Path(path)
    file = path / ENCODER_FILE if path.is_dir() else path
    if path.is_dir() and not file.exists():
        raise CheckpointError(f"{path} holds no {ENCODER_FILE}: not a finished polyjepa run")
    blob = load_file(file)
    if blob.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not a polyjepa encoder export (format {blob.get('format')!r})")
    return blob, file


def load_encoder(path: str | Path, device: str = "cpu", source: str | None = None) -> Backbone:
    """Load an encoder in eval mode: a polyjepa export (a run directory or its `encoder.pt`, a
    folder `polyjepa export --format hf` wrote, a Hub repository `org/name`), or
    another framework's checkpoint that an installed plugin imports (e.g. the official BYOL-A
    `AudioNTT2020-BYOLA-64x96d512.pth`; detected, or named with `source="byol_a_official"`).

    The returned module maps a batched raw input (as the modality's dataset yields it) to token
    latents `[B, R + N, D]`; pool them with `polyjepa.pool`.
    """
    return encoder_from_blob(*read_any(path, source), device=device)


def encoder_from_blob(blob: dict, file: Path, device: str = "cpu") -> Backbone:
    """The encoder an export blob (`read_any`, `read_export`) describes, in eval mode: for callers
    that also need the blob's `meta` or `config`, so the file is read once."""
    recipe = recipe_from_dict(blob["config"], str(file))
    backbone = build_backbone(recipe, blob["meta"])
    load_state(backbone, blob["state_dict"], file)
    return backbone.to(device).eval()


def load_objective(run_dir: str | Path, device: str = "cpu") -> nn.Module:
    """A run's whole objective (encoders, predictor, ...) from its last checkpoint, in eval
    mode: for uses beyond the exported encoder, e.g. rolling latents forward with the predictor
    of a `latent_rollout` run."""
    from polyjepa.build import build_objective
    from polyjepa.train import CHECKPOINT

    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise CheckpointError(f"{run_dir}: no {CHECKPOINT} (not a polyjepa run directory?)")
    state = load_file(path)
    recipe = recipe_from_dict(state["config"], str(path))
    objective = build_objective(recipe, state["meta"])
    load_state(objective, state["objective"], path)
    return objective.to(device).eval()


def read_any(path: str | Path, source: str | None = None) -> tuple[dict, Path]:
    """An export blob `{"config", "meta", "state_dict"}` from a polyjepa export, or converted
    from a foreign checkpoint by the importer `source` (None: whichever recognises the file)."""
    from polyjepa.export import looks_like_repo

    if source is None and looks_like_repo(str(path)):
        return read_export(path)
    path = Path(path)
    if source is None and (path.is_dir() or path.name == ENCODER_FILE):
        return read_export(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    loaded = load_file(path)
    if source is None and isinstance(loaded, dict) and loaded.get("format") == FORMAT:
        return loaded, path
    importers = list_importers()
    if source is not None and source not in importers:
        raise CheckpointError(f"unknown checkpoint format '{source}'; installed importers: "
                              f"{', '.join(sorted(importers)) or 'none'}")
    for name, importer in importers.items():
        if source not in (None, name):
            continue
        converted = importer(loaded, path)
        if converted is not None:
            config, meta, state = converted
            return {"format": FORMAT, "config": config, "meta": meta, "state_dict": state}, path
    if source is not None:
        raise CheckpointError(f"{path}: not a '{source}' checkpoint")
    raise CheckpointError(f"{path}: not a polyjepa encoder export, nor a checkpoint an installed "
                          f"importer recognises ({', '.join(sorted(importers)) or 'none'})")


def import_checkpoint(file: str | Path, out_dir: str | Path, source: str | None = None,
                      overrides: Sequence[str] = ()) -> Path:
    """Write a run directory (`encoder.pt`, `config.yaml`) for a foreign checkpoint.

    With `data.*` overrides naming data (e.g. `data.path=...`), the data's preprocessing
    statistics are computed on it (what the original authors do per downstream task), so that
    `polyjepa eval` and `embed` work on the result.
    """
    check_override_scope(list(overrides), ("data", "eval"), "import")
    out = Path(out_dir)
    check_output_folder(out)
    if (out / ENCODER_FILE).exists():  # before reading the checkpoint and any data
        raise ConfigError(f"--out {out} already holds an encoder; choose another --out")
    blob, path = read_any(file, source)
    recipe = recipe_from_dict(blob["config"], str(path), list(overrides))
    pin_paths(recipe.cfg)
    meta = blob["meta"]
    if overrides:
        meta = {**meta, **load_datasets(recipe)[2]}
    backbone = build_backbone(recipe, meta)
    load_state(backbone, blob["state_dict"], path)
    out.mkdir(parents=True, exist_ok=True)
    config = to_dict(recipe.cfg)
    (out / "config.yaml").write_text(f"# imported from {path}\n"
                                     + yaml.safe_dump(config, sort_keys=False))
    export_encoder(backbone, config, meta, out)
    return out


def read_run_config(run_dir: Path) -> dict:
    """The resolved recipe a run saved."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a polyjepa run directory (no config.yaml)")
    return yaml.safe_load(path.read_text())
