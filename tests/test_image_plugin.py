"""The sixth modality, `image`, is a separate package (examples/image_plugin) that registers
through an entry point only: installed here as a third party's distribution would be (a
`*.dist-info` on sys.path), it passes the conformance suite and trains its recipe."""

from __future__ import annotations

import importlib.metadata as metadata
import json

import pytest
from _helpers import single_thread  # noqa: F401  (autouse fixture)
from conftest import REPO_ROOT

from polyjepa import registry
from polyjepa.cli import main
from polyjepa.testing import check_modality

PACKAGE = REPO_ROOT / "examples" / "image_plugin"
RECIPE = PACKAGE / "polyjepa_image" / "i_jepa_tiny.yaml"


@pytest.fixture
def image_installed(site):
    """`polyjepa-image` installed: by pip (the README's test command installs it, as a user
    would), or else here as pip would (its source on sys.path, its entry point in a dist-info).
    Either way polyjepa is not told about it."""
    try:
        metadata.distribution("polyjepa-image")
    except metadata.PackageNotFoundError:
        site.install("polyjepa-image", {registry.MODALITY_GROUP: {"image": "polyjepa_image:plugin"}})
        site.monkeypatch.syspath_prepend(str(PACKAGE))
        site.activate()


def test_the_image_plugin_registers_and_conforms(image_installed):
    assert registry.list_modalities()["image"] == "polyjepa-image"
    assert check_modality("image", recipes=[str(RECIPE)]) == [str(RECIPE)]


def test_the_image_recipe_trains_five_steps_on_mnist(image_installed, shared_data, tmp_path,
                                                      monkeypatch, capsys):
    monkeypatch.setenv("POLYJEPA_DATA_ROOT", str(shared_data))
    code = main(["pretrain", str(RECIPE), "train.max_steps=5", "train.batch_size=16",
                 "train.probe_every=5", "train.probe_samples=200", "train.keep_checkpoints=[]",
                 "train.progress=false", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 5 and "probe/linear" in rows[-1]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "t10k-images-idx3-ubyte.gz" in config
