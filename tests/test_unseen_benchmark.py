"""`benchmarks/unseen.py`, the unseen-sets benchmark of `data_cards/unseen.md`: its set builders
give the card's counts and shapes, deterministically, and its dry run lists exactly the card's
pretraining commands."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("unseen_benchmark", REPO / "benchmarks" / "unseen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


U = load_benchmark()


def needs_shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED.resolve()}; see README")
    return SHARED.resolve()


def digest(folder: Path) -> str:
    """One hash of every file's relative path and bytes under `folder`."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.npy")):
        h.update(str(p.relative_to(folder)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def files_per_class(folder: Path) -> dict[str, int]:
    return {d.name: len(list(d.glob("*.npy"))) for d in sorted(folder.iterdir()) if d.is_dir()}


def test_the_card_has_15_sets_8_held_out_over_5_modalities():
    assert len(U.SETS) == 15 and len({s.name for s in U.SETS}) == 15
    held = [s for s in U.SETS if s.group == "held-out"]
    assert len(held) == 8 and {s.modality for s in held} == set(U.MY_RECIPES)
    assert {s.name for s in held if s.marked} == {"fsdd_speakers", "mnist_points", "mnist_motion"}


@pytest.mark.parametrize("name, rows, features, classes", [
    ("wine", 178, 13, 3), ("breast_cancer", 569, 30, 2), ("digits", 1797, 64, 10), ("iris", 150, 4, 3)])
def test_scikit_learn_tables(name, rows, features, classes, tmp_path):
    from sklearn import datasets

    s = next(s for s in U.SETS if s.name == name)
    assert s.builder(U.Context(tmp_path, tmp_path)) == [f"data.path=sklearn:{name}", "data.target=target"]
    bunch = getattr(datasets, f"load_{name}")()
    assert bunch.data.shape == (rows, features) and len(set(bunch.target)) == classes


@pytest.mark.parametrize("name, train, test", [
    ("ArrowHead", 36, 175), ("ItalyPowerDemand", 67, 1029), ("OSULeaf", 200, 242),
    ("ACSF1", 100, 100), ("PickupGestureWiimoteZ", 50, 50)])
def test_ucr_sets_from_the_aeon_wheel(name, train, test, tmp_path):
    if importlib.util.find_spec("aeon") is None:
        pytest.skip("aeon is not installed")
    s = next(s for s in U.SETS if s.name == name)
    (key,) = s.builder(U.Context(tmp_path, tmp_path))
    path = Path(key.removeprefix("data.path="))
    assert path.name == f"{name}_TRAIN.ts"

    def series(p: Path) -> int:  # the lines after the header's @data
        body = re.split(r"^@data\s*$", p.read_text(), flags=re.IGNORECASE | re.MULTILINE)[1]
        return sum(1 for line in body.splitlines() if line.strip())
    assert (series(path), series(path.with_name(f"{name}_TEST.ts"))) == (train, test)


def test_fsdd_keys_split_by_speaker_and_label_the_speaker(tmp_path):
    shared = needs_shared()
    ctx = U.Context(tmp_path, shared)
    names = sorted(p.name for p in (shared / U.FSDD).glob("*.wav"))
    assert len(names) == 3000
    digits = dict(k.split("=", 1) for k in U.fsdd_digits(ctx))
    pattern = re.compile(digits["data.label_regex"])
    theo = [n for n in names if pattern.match(n)["speaker"] == "theo"]
    assert digits["data.test_groups"] == "{speaker: [theo]}" and len(theo) == 500
    speakers = dict(k.split("=", 1) for k in U.fsdd_speakers(ctx))
    labels = [re.match(speakers["data.label_regex"], n)["label"] for n in names]
    assert sorted(set(labels)) == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert "data.test_groups" not in speakers  # the recipe's stratified 20 % split: 2,400 / 600


def test_built_sets_have_the_cards_counts_and_shapes_and_rebuild_identically(tmp_path):
    shared = needs_shared()
    ctx = U.Context(tmp_path / "data", shared)

    (key,) = U.dales_objects(ctx)
    rows = (tmp_path / "data" / "dales_objects" / "manifest.csv").read_text().splitlines()
    assert key == f"data.path={tmp_path / 'data' / 'dales_objects' / 'manifest.csv'}"
    assert rows[0] == "path,label" and len(rows) == 500  # 499 objects (060 is missing)
    labels = [r.rsplit(",", 1)[1] for r in rows[1:]]
    assert {c: labels.count(c) for c in U.DALES_CLASSES} == {
        "building": 99, "car": 100, "fence": 100, "pole": 100, "tree": 100}
    assert all(Path(r.rsplit(",", 1)[0]).is_file() for r in rows[1:3])

    assert U.mnist_points(ctx) == [f"data.path={tmp_path / 'data' / 'mnist_points'}"]
    points = tmp_path / "data" / "mnist_points"
    counts = files_per_class(points)
    assert sorted(counts) == [str(d) for d in range(10)] and sum(counts.values()) == 1000
    for p in sorted(points.rglob("*.npy"))[::97]:
        cloud = np.load(p)
        assert cloud.dtype == np.float32 and cloud.ndim == 2 and cloud.shape[1] == 3
        assert 32 <= len(cloud) <= 28 * 28 and (cloud[:, 2] == 0).all() and np.abs(cloud).max() <= 1

    U.moving_mnist_digits(ctx)
    clips = tmp_path / "data" / "moving_mnist_digits"
    counts = files_per_class(clips)
    assert sorted(counts) == [str(d) for d in range(10)] and sum(counts.values()) == 400
    clip = np.load(next(clips.rglob("*.npy")))
    assert clip.shape == (16, 64, 64) and clip.dtype == np.uint8 and clip.max() > 128

    U.mnist_motion(ctx)
    motion = tmp_path / "data" / "mnist_motion"
    assert files_per_class(motion) == {"down": 100, "left": 100, "right": 100, "up": 100}
    for direction, (dx, dy) in U.DIRECTIONS.items():
        clip = np.load(next((motion / direction).glob("*.npy")))
        assert clip.shape == (16, 64, 64) and clip.dtype == np.uint8
        step = (int(dy * U.MOTION_SPEED), int(dx * U.MOTION_SPEED))
        assert all(np.array_equal(np.roll(clip[t], step, axis=(0, 1)), clip[t + 1]) for t in range(15))

    again = U.Context(tmp_path / "again", shared)
    for build, name in ((U.mnist_points, "mnist_points"), (U.moving_mnist_digits, "moving_mnist_digits"),
                        (U.mnist_motion, "mnist_motion")):
        build(again)
        assert digest(tmp_path / "again" / name) == digest(tmp_path / "data" / name), name


def test_dry_run_lists_the_held_out_pretraining_commands(tmp_path, capsys):
    needs_shared()
    if importlib.util.find_spec("aeon") is None:
        pytest.skip("aeon is not installed")
    out = tmp_path / "runs"
    assert U.main(["--group", "held-out", "--dry-run", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    pretrain = [shlex.split(x) for x in lines if x.startswith("polyjepa pretrain ")]
    assert len(pretrain) == 8 * 2 * 3
    runs = {tuple(Path(w[w.index("--out") + 1]).relative_to(out).parts) for w in pretrain}
    held = [s for s in U.SETS if s.group == "held-out"]
    assert runs == {(s.name, U.recipe_for(s.modality, kind), f"seed{seed}")
                    for s in held for kind in U.KINDS for seed in range(3)}
    assert {w[2] for w in pretrain} == {U.recipe_for(m, k) for m in U.MY_RECIPES for k in U.KINDS}
    assert all(f"train.seed={Path(w[-1]).name.removeprefix('seed')}" in w for w in pretrain)
    assert all(any(x.startswith("data.path=") for x in w) for w in pretrain)
    evals = [x for x in lines if x.startswith("polyjepa eval ")]
    assert len(evals) == 8 * 2 and all("eval.init_seeds=3" in x and "--json" in x for x in evals)
    assert not out.exists()  # a dry run writes nothing
