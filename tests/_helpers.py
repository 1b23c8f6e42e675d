"""Small recipes and utilities shared by the training/objective/evaluation tests (no fixtures)."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from threadpoolctl import threadpool_limits

from polyjepa import registry
from polyjepa.build import Recipe, recipe_from_dict
from polyjepa.catalog import summary_rows

BUILTIN_MODALITIES = ("audio", "pointcloud", "tabular", "timeseries", "video")
"""The plugins our pyproject registers (sorted), as `polyjepa list` must show them."""
THIRD_PARTY = Path(__file__).parent / "third_party" / "polyjepa_extra.py"
EXTRA_EP = {"polyjepa.components": {"tabular.mlp_tokenizer": "polyjepa_extra:MLPTokenizer"}}
"""`polyjepa-extra`: a third-party distribution adding an MLP tokenizer to the tabular modality."""
DEMOS = sorted(row["name"] for row in summary_rows() if row["scale"] == "demo")
"""Every shipped demo recipe."""
SHORT_DEMO_RUN = ["synthetic=true", "train.log_every=1", "train.progress=false",
                  "train.probe_every=null", "train.select=last", "train.keep_checkpoints=[]",
                  "train.checkpoint_every=1000"]
"""A demo's few steps on its plugin's synthetic data: every step logged, no online probe (so no
selection), no kept encoders, one checkpoint (the last step's); add `train.max_steps`."""
NEEDS = {"audio": ("librosa", "soundfile"), "video": ("av",)}
"""Optional packages a modality's synthetic data or frontend reads through (skipped without)."""
SYNTHETIC_FIT = {"video_tube_jepa": ["model.tokenizer.patch=8", "masker.min_keep=4"]}
"""Overrides that fit a demo to its plugin's small synthetic clips (as tests/modalities do)."""


def skip_without_extras(name: str) -> None:
    """Skip a test of demo `name` when its modality's optional packages are not installed."""
    modality = next(row["modality"] for row in summary_rows() if row["name"] == name)
    missing = [m for m in NEEDS.get(modality, ()) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name}: {', '.join(missing)} not installed")


@pytest.fixture(autouse=True)
def single_thread():
    """Run tiny models on one intra-op thread (import this fixture into a test module).

    On a 2-core machine two OpenMP/BLAS threads spin against each other (and against any other
    process), making small matmuls ~30x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # numpy/scipy BLAS (sklearn probes) likewise
        yield
    torch.set_num_threads(threads)


def tiny_recipe(train: dict | None = None, encoder: dict | None = None, **sections: Any) -> dict:
    """A tiny T-JEPA recipe on the tabular plugin's synthetic table (1600 train / 400 test rows)."""
    raw: dict[str, Any] = {
        "modality": "tabular",
        "synthetic": True,
        "model": {
            "tokenizer": {"name": "tabular.feature", "dim": 16},
            "encoder": {"name": "transformer", "depth": 1, "num_heads": 2, **(encoder or {})},
            "predictor": {"name": "jepa", "dim": 16, "depth": 1, "num_heads": 2},
        },
        "masker": {"name": "random_subsets"},
        "objective": {"name": "jepa"},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "train": {"batch_size": 32, "progress": False, "device": "cpu", "max_steps": 4,
                  "log_every": 1, "checkpoint_every": 1000, "monitor_every": 1000,
                  **(train or {})},
    }
    for key, value in sections.items():
        raw[key] = value
    return raw


def build(raw: dict, overrides: list[str] = ()) -> Recipe:
    return recipe_from_dict(copy.deepcopy(raw), "test", list(overrides))


def write_recipe(raw: dict, directory: Path, name: str = "recipe.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def read_metrics(run_dir: Path) -> list[dict]:
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def assert_state_equal(a: dict, b: dict) -> None:
    """Bit-for-bit equality of two state dicts (same keys, `torch.equal` tensors)."""
    assert set(a) == set(b)
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), f"{key} differs"
        else:
            assert a[key] == b[key], f"{key} differs"


class Interrupt(KeyboardInterrupt):
    """Raised from `Trainer.save` to simulate Ctrl-C right after a checkpoint."""


def interrupt_after_checkpoint(monkeypatch, at_step: int) -> None:
    """Make the run stop (raise `Interrupt`) right after it saves its step-`at_step` checkpoint."""
    from polyjepa.train import Trainer

    original = Trainer.save

    def save(self):
        path = original(self)
        if self.step == at_step:
            raise Interrupt
        return path

    monkeypatch.setattr(Trainer, "save", save)


@dataclass
class Site:
    """A folder that acts as an extra site-packages: distributions written here are installed
    once `activate()` puts the folder on sys.path."""

    root: Path
    modules: list[str] = field(default_factory=list)
    monkeypatch: pytest.MonkeyPatch | None = None

    def activate(self) -> None:
        """Put the folder on sys.path and forget loaded plugins (as after `pip install`)."""
        assert self.monkeypatch is not None
        self.monkeypatch.syspath_prepend(str(self.root))
        registry.reset()

    def install(self, name: str, entry_points: dict[str, dict[str, str]],
                modules: dict[str, str] | None = None, version: str = "0.1.0") -> None:
        """Write `<name>-<version>.dist-info` with METADATA and entry_points.txt, and modules."""
        dist = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        text = ""
        for group, eps in entry_points.items():
            text += f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        (dist / "entry_points.txt").write_text(text)
        for module, source in (modules or {}).items():
            (self.root / f"{module}.py").write_text(source)
            self.modules.append(module)

    def install_extra(self, extra_eps: dict[str, dict[str, str]] | None = None) -> None:
        """The `polyjepa-extra` distribution with the MLP tokenizer (plus `extra_eps`)."""
        eps = {group: dict(v) for group, v in EXTRA_EP.items()}
        for group, more in (extra_eps or {}).items():
            eps.setdefault(group, {}).update(more)
        self.install("polyjepa-extra", eps, {"polyjepa_extra": THIRD_PARTY.read_text()})


@contextlib.contextmanager
def logged(caplog: pytest.LogCaptureFixture, pattern: str):
    """Expect a warning of polyjepa's loggers matching `pattern` (`re.search`) in the block;
    yields the list of the block's messages (filled when the block ends)."""
    messages: list[str] = []
    with caplog.at_level(logging.WARNING, logger="polyjepa"):
        start = len(caplog.records)
        yield messages
        messages.extend(r.getMessage() for r in caplog.records[start:])
    assert any(re.search(pattern, m) for m in messages), \
        f"no polyjepa log message matches {pattern!r}: {messages}"


def wav_run(root: Path, per_class: int = 4, steps: int = 1) -> Path:
    """A BYOL-A demo run of `steps` steps on class folders `root/data/{low,high}/K.wav` of
    `per_class` quarter-second noise clips each; returns the run directory `root/run`."""
    import soundfile as sf

    from polyjepa.train import pretrain

    rng = np.random.default_rng(0)
    for name in ("low", "high"):
        (root / "data" / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            sf.write(root / "data" / name / f"{k}.wav",
                     rng.uniform(-0.3, 0.3, 4000).astype(np.float32), 16000)
    raw = {"base": "byol_a_demo", "data": {"path": str(root / "data"), "label_regex": None,
                                           "test_groups": None, "probe_groups": [],
                                           "clip_seconds": 0.25},
           "train": {"max_steps": steps, "batch_size": 4, "progress": False, "device": "cpu"}}
    return pretrain(write_recipe(raw, root), [], root / "run")
