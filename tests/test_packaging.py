"""The built wheel holds the package, the tabular plugin and its bundled data, the recipes, the
entry points and the console script."""

from __future__ import annotations

import configparser
import gzip
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _helpers import BUILTIN_MODALITIES

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "core", "modalities", "recipes", "README.md", "LICENSE")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built by pip from a copy of the source tree (so the build leaves no `build/` or
    `*.egg-info` in the repository, which `importlib.metadata` would find on sys.path)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment; cannot build without "
                    "build isolation (pip install setuptools)")
    root = tmp_path_factory.mktemp("wheel")
    src, dist = root / "src", root / "dist"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(dist)],
        cwd=src, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0 and ("No module named 'setuptools'" in proc.stderr
                                 or "Cannot import 'setuptools.build_meta'" in proc.stderr):
        pytest.skip(f"cannot build without build isolation: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = dist.glob("polyjepa-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    (member,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(member).decode()


def test_wheel_holds_the_package_plugin_data_and_recipes(wheel):
    names = set(wheel.namelist())
    for member in ("polyjepa/__init__.py", "polyjepa/__main__.py", "polyjepa/cli.py",
                   "polyjepa/modalities/__init__.py", "polyjepa/modalities/tabular/__init__.py",
                   "polyjepa/modalities/tabular/data/adult-train.csv.gz",
                   "polyjepa/modalities/tabular/data/adult-test.csv.gz",
                   "polyjepa/recipes/__init__.py", "polyjepa/recipes/t_jepa.yaml"):
        assert member in names, member
    # bundled data is the real table, not a pointer file
    with wheel.open("polyjepa/modalities/tabular/data/adult-train.csv.gz") as f:
        lines = gzip.decompress(f.read()).decode().splitlines()
    assert len(lines) >= 32561
    assert not any(n.startswith(("tests/", "runs/", "core/", "benchmarks/")) for n in names)


def test_every_source_module_recipe_and_modality_is_in_the_wheel(wheel):
    """A new module, recipe or modality subpackage is not forgotten by the explicit package list."""
    names = set(wheel.namelist())
    expected = {f"polyjepa/{p.name}" for p in (REPO / "core").glob("*.py")}
    expected |= {f"polyjepa/recipes/{p.name}" for p in (REPO / "recipes").glob("*.yaml")}
    for path in (REPO / "modalities").rglob("*.py"):
        expected.add(f"polyjepa/modalities/{path.relative_to(REPO / 'modalities').as_posix()}")
    assert expected - names == set()


def test_wheel_entry_points_and_console_script(wheel):
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # keep entry-point names as written
    parser.read_string(dist_info(wheel, "entry_points.txt"))
    assert dict(parser["polyjepa.modalities"]) == {
        name: f"polyjepa.modalities.{name}:plugin" for name in BUILTIN_MODALITIES}
    assert parser["console_scripts"]["polyjepa"] == "polyjepa.cli:main"
    metadata = dist_info(wheel, "METADATA")
    assert "Name: polyjepa\n" in metadata
    assert "Requires-Python: >=3.11" in metadata


def test_the_wheel_carries_the_licence_pyproject_names(wheel):
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert 'license = "MIT"' in (REPO / "pyproject.toml").read_text()
    assert any(n.endswith("LICENSE") for n in wheel.namelist())
    assert "License-Expression: MIT" in dist_info(wheel, "METADATA")


def test_the_command_line_answers_help_version_and_recipes_without_torch():
    """`--help`, `--version` and `recipes` parse and answer before importing torch, timm or any
    plugin (benchmarks/bench_startup.py measures the time)."""
    probe = ("import sys; from polyjepa.cli import main\n"
             "for argv in (['--version'], ['--help'], ['recipes'], ['eval', '--help'],\n"
             "             ['finetune', '--help']):\n"
             "    try:\n"
             "        main(argv)\n"
             "    except SystemExit:\n"
             "        pass\n"
             "heavy = [m for m in ('torch', 'timm', 'sklearn', 'polyjepa.modalities')"
             " if m in sys.modules]\n"
             "print('heavy:', heavy)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert "polyjepa 0.1.0" in out and "usage: polyjepa" in out and "t_jepa_demo" in out
    assert "eval.shots=[1, 2, 5, 10, 20]" in out and "finetune.batch_size=64" in out
    assert out.strip().endswith("heavy: []"), out
    # and the public names still resolve, on first use
    names = subprocess.run([sys.executable, "-c", "import polyjepa, sys; "
                            "print('torch' in sys.modules, polyjepa.JEPA.__name__, "
                            "polyjepa.embed.__module__, "
                            "all(getattr(polyjepa, n) is not None for n in polyjepa.__all__))"],
                           capture_output=True, text=True).stdout.split()
    assert names == ["False", "JEPA", "polyjepa.embedding", "True"]


def test_a_tabular_run_needs_no_audio_video_or_pointcloud_extra(tmp_path):
    """With librosa, soundfile, PyAV and plyfile missing (as without the extras), a tabular run
    trains and imports none of them; audio then fails with one line naming the extra."""
    script = f"""
import sys
for name in ("librosa", "soundfile", "av", "plyfile"):
    sys.modules[name] = None  # `import name` raises ImportError, as if not installed
sys.path.insert(0, {str(REPO / "tests")!r})
from conftest import write_recipe
from polyjepa.train import pretrain
run = pretrain(write_recipe(__import__("pathlib").Path({str(tmp_path)!r})), [],
               __import__("pathlib").Path({str(tmp_path / "run")!r}))
assert (run / "encoder.pt").is_file()
from polyjepa.errors import MissingExtraError
from polyjepa.modalities.audio.readers import read_audio
try:
    read_audio(__import__("pathlib").Path("x.wav"), 16000)
except MissingExtraError as exc:
    print("error:", exc)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "error: reading audio files needs soundfile, which is not installed" in proc.stdout
    assert "pip install 'polyjepa[audio]'" in proc.stdout
