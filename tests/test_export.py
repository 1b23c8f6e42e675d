"""`polyjepa export` (a Hugging Face Hub folder; ONNX checked with onnxruntime) and `push`: every
demo recipe's encoder round-trips through the Hub layout into a fresh process with equal
embeddings, and exports to ONNX within 1e-4 of PyTorch on a batch of another size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from _helpers import single_thread, tiny_recipe, write_recipe  # noqa: F401  (autouse fixture)

import polyjepa
from polyjepa.build import build_backbone, load_recipe
from polyjepa.cli import main
from polyjepa.config import list_recipes, to_dict
from polyjepa.errors import CheckpointError
from polyjepa.export import ONNX_FILE, OUTPUT, _samples, export_run
from polyjepa.hub import export_encoder
from polyjepa.modalities.tabular.readers import synthetic_frame
from polyjepa.train import pretrain

pytest.importorskip("safetensors")
DEMOS = sorted(name for name in list_recipes() if name.endswith("_demo"))
NO_ONNX = {"point_jepa_demo": "farthest-point sampling unrolls into one graph step per group; "
                              "torch's exporter did not finish in 10 minutes",
           "le_jepa_pointcloud_demo": "the same point-cloud encoder"}


def _demo_run(name, folder):
    """A run folder holding the demo recipe's encoder (its architecture, random weights, built
    for the modality's synthetic set) and a batch of 3 of that set's test samples."""
    recipe = load_recipe(name, ["synthetic=true"])
    _, test, meta = recipe.plugin.synthetic(seed=0)
    torch.manual_seed(0)
    backbone = build_backbone(recipe, meta).eval()
    export_encoder(backbone, to_dict(recipe.cfg), meta, folder)
    return backbone, recipe.cfg.eval.pooling, _samples(test, 3)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("demos")
    out = {}
    for name in DEMOS:
        backbone, pooling, x = _demo_run(name, root / name)
        with torch.no_grad():
            expected = backbone.embed(x, pooling)
        torch.save({"x": x, "pooling": pooling, "expected": expected}, root / f"{name}.pt")
        out[name] = root / name
    return root, out


def test_every_demo_encoder_round_trips_through_the_hub_layout(demos):
    root, runs = demos
    for name, run in runs.items():
        folder = export_run(run, "hf", root / f"{name}_hf")
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                            "model.safetensors"]
        config = json.loads((folder / "config.json").read_text())
        assert config["format"] == "polyjepa-hf/1"
        assert config["modality"] == load_recipe(name).cfg.modality
        assert "preprocessing" in config and "encoder" in config["architecture"]
    # in a fresh process, the exported folder embeds bit for bit as the run's own encoder.pt
    # does there (across processes, BLAS results may differ in the last bit with memory
    # alignment, so the parent's numbers are compared within 1e-5)
    code = ("import sys, torch, polyjepa\n"
            "root = sys.argv[1]\n"
            "for name in sys.argv[2:]:\n"
            "    saved = torch.load(f'{root}/{name}.pt', weights_only=True)\n"
            "    exported = polyjepa.load_encoder(f'{root}/{name}_hf')\n"
            "    original = polyjepa.load_encoder(f'{root}/{name}')\n"
            "    a, b = exported.state_dict(), original.state_dict()\n"
            "    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name\n"
            "    with torch.no_grad():\n"
            "        got = exported.embed(saved['x'], saved['pooling'])\n"
            "        own = original.embed(saved['x'], saved['pooling'])\n"
            "    assert torch.equal(got, own), name\n"
            "    assert torch.allclose(got, saved['expected'], atol=1e-5), name\n"
            "    print('equal', name)\n")
    done = subprocess.run([sys.executable, "-c", code, str(root), *runs], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split().count("equal") == len(runs)


@pytest.mark.parametrize("name", [n for n in DEMOS if n not in NO_ONNX])
def test_demo_encoders_export_to_onnx_within_tolerance(name, tmp_path):
    runtime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    backbone, pooling, _ = _demo_run(name, tmp_path / "run")
    folder = export_run(tmp_path / "run", "onnx", tmp_path / "onnx")
    info = json.loads((folder / "onnx.json").read_text())
    assert info["max_abs_difference"] <= 1e-4
    # a batch of 5, not the 2 it was traced on nor the 3 it was checked on
    recipe = load_recipe(name, ["synthetic=true"])
    x = _samples(recipe.plugin.synthetic(seed=1)[1], 5)
    keys = sorted(x) if isinstance(x, dict) else None
    feed = ({f"input_{k}": x[k].numpy() for k in keys} if keys else {"input": x.numpy()})
    assert set(feed) == set(info["inputs"])
    session = runtime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], feed)[0]
    with torch.no_grad():
        expected = backbone.embed(x, pooling).numpy()
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    frame = synthetic_frame(200, seed=1)
    frame.to_csv(folder / "rows.csv", index=False)
    raw = tiny_recipe(train={"max_steps": 2}, synthetic=False,
                      data={"path": str(folder / "rows.csv"), "test_path": None,
                            "target": "label"})
    run = pretrain(write_recipe(raw, folder), [], folder / "run")
    assert main(["eval", str(run), "eval.protocols=[linear_probe]", "eval.init_seeds=1"]) == 0
    return run, frame


def test_cli_export_writes_a_card_that_embeds_like_the_run(table_run, tmp_path, capsys):
    run, frame = table_run
    out = tmp_path / "exported"
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    assert "load it with polyjepa.load_encoder" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: polyjepa") and "## Evaluation" in card
    assert (run / "eval.txt").read_text().splitlines()[0] in card  # the run's own table
    rows = frame.drop(columns=["label"])
    np.testing.assert_array_equal(polyjepa.embed(out, rows, device="cpu").x,
                                  polyjepa.embed(run, rows, device="cpu").x)
    # a folder already holding files is refused, and nothing is left behind
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_cli_export_onnx_of_a_trained_run(table_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    run, _ = table_run
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "o")]) == 0
    info = json.loads((tmp_path / "o" / "onnx.json").read_text())
    assert info["max_abs_difference"] <= 1e-4 and set(info["inputs"]) == {"input_cat",
                                                                           "input_num"}


def test_hub_names_without_a_network_fail_in_one_line(table_run, monkeypatch, capsys):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="no-such-org/no-such-model: not a local folder"):
        polyjepa.load_encoder("no-such-org/no-such-model")
    run, _ = table_run
    monkeypatch.setenv("HF_TOKEN", "hf_invalid")
    assert main(["push", str(run), "no-such-org/no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "push no-such-org/no-such-model" in err[0] and "HF_TOKEN" in err[0]
