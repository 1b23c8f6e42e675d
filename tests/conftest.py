"""Shared fixtures: tiny recipes that train in about a second, and the shared datasets folder;
and one check over the whole suite: every key an error advises ("lower train.batch_size") is a
key recipes and overrides accept."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from _helpers import Site

from polyjepa import registry
from polyjepa.config import deep_merge, is_recipe_key
from polyjepa.errors import PolyjepaError

ADVICE = re.compile(r"\b(?:set|lower|raise|increase|pass|give|use|add|drop|choose)\s+"
                    r"((?:[a-z_]+\.)+[a-z_]+)(?![\w.])")
ADVISED: list[tuple[str, str]] = []  # (key, message) of every error raised in this session


def advised_keys(message: str) -> list[str]:
    """The recipe keys a message advises setting, e.g. `["finetune.batch_size"]`."""
    return ADVICE.findall(message)


def unknown_advice(advised: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The `(key, message)` pairs whose key no recipe accepts."""
    from polyjepa.registry import get_modality, list_modalities

    schemas = [get_modality(m).data_config for m in list_modalities()]
    return [(k, m) for k, m in advised if not is_recipe_key(k, schemas)]


def pytest_configure(config):
    """`polyjepa list`'s cache file goes to a folder of this session (subprocesses inherit it),
    never to the user's cache folder."""
    import tempfile

    os.environ["POLYJEPA_CACHE_DIR"] = tempfile.mkdtemp(prefix="polyjepa-cache-")


@pytest.fixture(scope="session", autouse=True)
def _record_advice():
    """Record the advice of every polyjepa error the suite raises (checked at the end)."""
    real = PolyjepaError.__init__

    def record(self, *args):
        if args and isinstance(args[0], str):
            ADVISED.extend((key, args[0]) for key in advised_keys(args[0]))
        real(self, *args)

    PolyjepaError.__init__ = record
    yield
    PolyjepaError.__init__ = real


def pytest_sessionfinish(session, exitstatus):
    bad = unknown_advice(ADVISED)
    if bad:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for key, message in sorted(set(bad)):
            reporter.write_line(f"error advice names '{key}', which no recipe accepts: {message}",
                                red=True)
        session.exitstatus = 1

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


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty site folder; call `activate()` after installing into it to put it on sys.path."""
    root = tmp_path / "site"
    root.mkdir()
    s = Site(root, monkeypatch=monkeypatch)
    registry.reset()
    yield s
    registry.reset()
    for module in s.modules:
        sys.modules.pop(module, None)
