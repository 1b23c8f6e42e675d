"""Small labelled sets with unlabelled pools, one per `my_*` recipe, written as files a user
would bring: each builder returns the `data.*` overrides (the last one `data.unlabelled=...`) and
the number of pool samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from polyjepa.modalities.tabular.readers import synthetic_frame

RNG = np.random.default_rng(0)


def audio(root: Path) -> tuple[list[str], int]:
    """Class folders at 16 kHz mono; the pool: a flat folder of stereo 22.05 kHz clips and one
    file named alone."""
    t = np.arange(8000) / 16000
    for k, name in enumerate(("door", "bell")):
        (root / "wavs" / name).mkdir(parents=True)
        for i in range(6):
            wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * k) * t)
            sf.write(root / "wavs" / name / f"t{i}.wav", wave.astype(np.float32), 16000)
    (root / "pool").mkdir()
    for i in range(5):
        sf.write(root / "pool" / f"u{i}.wav",
                 (0.1 * RNG.normal(size=(12000, 2))).astype(np.float32), 22050)
    sf.write(root / "one.wav", (0.1 * RNG.normal(size=9000)).astype(np.float32), 8000)
    return [f"data.path={root / 'wavs'}", "data.logmel.norm_clips=8",
            f"data.unlabelled=[{root / 'pool'}, {root / 'one.wav'}]"], 6


def table(root: Path) -> tuple[list[str], int]:
    """A labelled CSV; the pool: two tables without the label column, named by a pattern."""
    synthetic_frame(100, seed=1).to_csv(root / "rows.csv", index=False)
    (root / "more").mkdir()
    for i in range(2):
        synthetic_frame(30, seed=2 + i).drop(columns=["label"]).to_csv(
            root / "more" / f"part{i}.csv", index=False)
    return [f"data.path={root / 'rows.csv'}", "data.target=label",
            f"data.unlabelled={root / 'more' / '*.csv'}"], 60


def clouds(root: Path) -> tuple[list[str], int]:
    """Class folders of .xyz files; the pool: a glob of loose clouds of other sizes."""
    for name, scale in (("pole", [0.1, 0.1, 2.0]), ("roof", [2.0, 2.0, 0.1])):
        (root / "clouds" / name).mkdir(parents=True)
        for i in range(6):
            np.savetxt(root / "clouds" / name / f"{i}.xyz", RNG.normal(size=(300, 3)) * scale)
    (root / "scan").mkdir()
    for i in range(4):
        np.savetxt(root / "scan" / f"{i}.xyz", RNG.normal(size=(50 + 400 * i, 3)))
    return [f"data.path={root / 'clouds'}", f"data.unlabelled={root / 'scan' / '*.xyz'}"], 4


def videos(root: Path) -> tuple[list[str], int]:
    """Class folders of colour clips; the pool: a manifest without a label column listing grey
    clips of another size and length."""
    for name in ("left", "right"):
        (root / "clips" / name).mkdir(parents=True)
        for i in range(5):
            np.save(root / "clips" / name / f"{i}.npy",
                    (RNG.random((18, 40, 48, 3)) * 255).astype(np.uint8))
    (root / "raw").mkdir()
    for i in range(3):
        np.save(root / "raw" / f"{i}.npy", (RNG.random((10, 20, 30)) * 255).astype(np.uint8))
    (root / "raw.csv").write_text("path\n" + "".join(f"raw/{i}.npy\n" for i in range(3)))
    return [f"data.path={root / 'clips'}", f"data.unlabelled={root / 'raw.csv'}"], 3


def series(root: Path) -> tuple[list[str], int]:
    """A labelled long table of series of 20-60 steps; the pool: unlabelled series of 5-80."""
    rows = []
    for i in range(30):
        label = ("calm", "wavy")[i % 2]
        wave = np.sin(np.arange(int(RNG.integers(20, 60))) / (2 if label == "wavy" else 20))
        rows += [{"id": i, "time": k, "value": v, "label": label} for k, v in enumerate(wave)]
    pd.DataFrame(rows).to_csv(root / "series.csv", index=False)
    rows = []
    for i in range(12):
        rows += [{"id": i, "time": k, "value": v}
                 for k, v in enumerate(RNG.normal(size=int(RNG.integers(5, 80))))]
    pd.DataFrame(rows).to_csv(root / "pool.csv", index=False)
    return [f"data.path={root / 'series.csv'}", f"data.unlabelled={root / 'pool.csv'}"], 12


CASES = {"my_audio": audio, "my_table": table, "my_clouds": clouds, "my_videos": videos,
         "my_series": series}
"""Recipe -> builder(root) -> (overrides, pool size)."""
