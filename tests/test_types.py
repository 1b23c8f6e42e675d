"""mypy over the package: the core's contracts (`polyjepa.contracts`) and every annotation of
core/ and modalities/ agree (settings: `[tool.mypy]` in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def package_tree(root: Path) -> Path:
    """`root/polyjepa` laid out as the installed package (core/ files, modalities/ beside them),
    as links to the sources: mypy cannot follow setuptools' package-dir mapping."""
    package = root / "polyjepa"
    package.mkdir()
    for source in (REPO / "core").glob("*.py"):
        (package / source.name).symlink_to(source)
    (package / "modalities").symlink_to(REPO / "modalities", target_is_directory=True)
    return package


def test_mypy_finds_no_errors(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[dev]')")
    package_tree(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "polyjepa"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "MYPYPATH": str(tmp_path)})
    report = re.sub(r"^polyjepa/(?!modalities/)", "core/", proc.stdout + proc.stderr, flags=re.M)
    report = re.sub(r"^polyjepa/modalities/", "modalities/", report, flags=re.M)
    assert proc.returncode == 0, report
