"""Export a trained encoder and load it back for downstream use."""

from __future__ import annotations

from pathlib import Path

import yaml
from torch import nn

from polyjepa.build import build_backbone, recipe_from_dict
from polyjepa.checkpoint import load_file, load_state, save_atomic
from polyjepa.encoders import Backbone
from polyjepa.errors import CheckpointError

ENCODER_FILE = "encoder.pt"
FORMAT = "polyjepa-encoder/1"


def export_encoder(backbone: nn.Module, config: dict, meta: dict, run_dir: Path) -> Path:
    """Write `run_dir/encoder.pt`: weights, the resolved config and the data `meta` to rebuild."""
    path = run_dir / ENCODER_FILE
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    save_atomic({"format": FORMAT, "state_dict": state, "config": config, "meta": meta}, path)
    return path


def read_export(path: str | Path) -> tuple[dict, Path]:
    """The contents of an exported encoder (a run directory or its `encoder.pt`) and its file."""
    path = Path(path)
    file = path / ENCODER_FILE if path.is_dir() else path
    if path.is_dir() and not file.exists():
        raise CheckpointError(f"{path} holds no {ENCODER_FILE}: not a finished polyjepa run")
    blob = load_file(file)
    if blob.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not a polyjepa encoder export (format {blob.get('format')!r})")
    return blob, file


def load_encoder(path: str | Path, device: str = "cpu") -> Backbone:
    """Load an exported encoder (a run directory or its `encoder.pt`) in eval mode.

    The returned module maps a batched raw input (as the modality's dataset yields it) to token
    latents `[B, R + N, D]`; pool them with `polyjepa.pool`.
    """
    blob, file = read_export(path)
    recipe = recipe_from_dict(blob["config"], str(file))
    backbone = build_backbone(recipe, blob["meta"])
    load_state(backbone, blob["state_dict"], file)
    return backbone.to(device).eval()


def read_run_config(run_dir: Path) -> dict:
    """The resolved recipe a run saved."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a polyjepa run directory (no config.yaml)")
    return yaml.safe_load(path.read_text())
