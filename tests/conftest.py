"""Shared fixtures: tiny recipes that train in about a second, and the shared datasets folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from polyjepa.config import deep_merge

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


def tiny_recipe_dict(synthetic: bool = True) -> dict[str, Any]:
    """A small tabular JEPA recipe: one-block encoder and predictor, width 16, a few steps.

    With `synthetic=False` it trains on scikit-learn's breast-cancer table (569 rows, 30 numeric
    features) split 80/20 instead of the modality's built-in synthetic table.
    """
    recipe: dict[str, Any] = {
        "modality": "tabular",
        "paper": "test recipe",
        "model": {
            "tokenizer": {"name": "tabular.feature", "dim": 16},
            "encoder": {"name": "transformer", "depth": 1, "num_heads": 2},
            "predictor": {"name": "jepa", "dim": 16, "depth": 1, "num_heads": 2},
        },
        "masker": {"name": "random_subsets"},
        "objective": {"name": "jepa"},
        "train": {
            "max_steps": 3,
            "batch_size": 32,
            "progress": False,
            "checkpoint_every": 2,
            "log_every": 1,
            "monitor_every": 1000,
            "device": "cpu",
        },
    }
    if synthetic:
        recipe["synthetic"] = True
    else:
        recipe["data"] = {"path": "sklearn:breast_cancer", "test_path": None}
    return recipe


def write_recipe(directory: Path, overrides: dict | None = None, *, synthetic: bool = True,
                 name: str = "tiny.yaml") -> Path:
    """Write the tiny recipe (with nested `overrides` merged in) to `directory/name`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(deep_merge(tiny_recipe_dict(synthetic), overrides or {}),
                                   sort_keys=False))
    return path


@pytest.fixture(scope="session")
def recipe_writer() -> Callable[..., Path]:
    """`write_recipe(directory, overrides=None, *, synthetic=True, name="tiny.yaml") -> Path`,
    for fixtures of wider scope than `tmp_path`."""
    return write_recipe


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Callable[..., Path]:
    """`make(overrides=None, *, synthetic=True, name="tiny.yaml") -> Path` of a tiny tabular
    JEPA recipe in `tmp_path`; `overrides` is a nested dict merged into the recipe."""

    def make(overrides: dict | None = None, *, synthetic: bool = True,
             name: str = "tiny.yaml") -> Path:
        return write_recipe(tmp_path, overrides, synthetic=synthetic, name=name)

    return make


@pytest.fixture
def shared_data() -> Path:
    """The shared datasets folder (`../shared/data` beside the repository)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}; see README")
    return SHARED_DATA
