"""Time-series throughput and the MiniRocket reference, in one run (ratios are what to read;
these machines are shared and noisy):

(a) `.ts` reading: polyjepa's reader vs aeon's `load_from_ts_file` on the same files (the shared
    UCR/UEA sets when POLYJEPA_DATA_ROOT holds them, else a generated multivariate,
    variable-length file), files/s and their ratio (ABBA rounds, median of per-round ratios);
(b) masking: padding-aware patch masks (`timeseries.masks`, random 70 %) for batches of 256
    series of different lengths, samples/s;
(c) training samples/s of `ts_jepa_demo` (synthetic series) and `ts_jepa` (cart-pole windows);
(d) MiniRocket (aeon, default 10,000 features + ridge classifier) test accuracy on each shared set,
    the strong non-deep baseline (JapaneseVowels resampled to its longest training series, as
    MiniRocket needs equal lengths).

aeon is an optional dependency (`pip install aeon`, better in a separate environment: it pins
numpy and pandas below the versions polyjepa's environment may hold); without it (a) reports
only our reader and (d) is skipped. Prints `name=value` lines:

    ts_read_files_per_s=...  [aeon_read_files_per_s=...  ts_read_speedup=...]
    mask_samples_per_s=...  ts_jepa_demo_train_samples_per_s=...  ts_jepa_cartpole_train_samples_per_s=...
    [minirocket_accuracy_<Set>=...]

Usage: python benchmarks/bench_timeseries.py [--rounds 6] [--train-steps 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import abba, timed, train_samples_per_s

from polyjepa.modalities.timeseries.config import TimeSeriesDataConfig
from polyjepa.modalities.timeseries.maskers import PatchMasker
from polyjepa.modalities.timeseries.preprocess import align
from polyjepa.modalities.timeseries.readers import read_series, read_ts

SETS = ("GunPoint", "BasicMotions", "JapaneseVowels")

try:
    from aeon.datasets import load_from_ts_file
except ImportError:
    load_from_ts_file = None


def shared_sets() -> dict[str, Path]:
    root = os.environ.get("POLYJEPA_DATA_ROOT")
    found = {}
    for name in SETS:
        path = Path(root or "") / "timeseries" / name / f"{name}_TRAIN.ts"
        if root and path.exists():
            found[name] = path
    return found


def generated_file(directory: Path) -> Path:
    """A multivariate (6 channels), variable-length (50-150 steps), labelled `.ts` file."""
    rng = np.random.default_rng(0)
    lines = ["@problemName generated", "@timeStamps false", "@missing false",
             "@univariate false", "@dimensions 6", "@equalLength false",
             "@classLabel true a b", "@data"]
    for i in range(300):
        t = int(rng.integers(50, 151))
        channels = [",".join(f"{v:.5f}" for v in rng.normal(size=t)) for _ in range(6)]
        lines.append(":".join(channels) + (":a" if i % 2 else ":b"))
    path = directory / "generated_TRAIN.ts"
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_reading(files: list[Path], rounds: int) -> None:
    ours = lambda: [read_ts(f) for f in files]  # noqa: E731
    if load_from_ts_file is None:
        seconds = statistics.median(timed(ours) for _ in range(rounds))
        print(f"ts_read_files_per_s={len(files) / seconds:.1f}")
        return
    theirs = lambda: [load_from_ts_file(str(f)) for f in files]  # noqa: E731
    t_aeon, t_ours, ratio = abba(theirs, ours, rounds)
    print(f"ts_read_files_per_s={len(files) / t_ours:.1f}")
    print(f"aeon_read_files_per_s={len(files) / t_aeon:.1f}")
    print(f"ts_read_speedup={1 / ratio:.2f}")


def bench_masking(rounds: int, batch: int = 256) -> None:
    g = torch.Generator().manual_seed(0)
    masker = PatchMasker(grid=(16, 6), stride=8, mode="random", mask_ratio=0.7)
    x = {"values": torch.zeros(batch, 6, 128), "length": torch.randint(64, 129, (batch,), generator=g)}
    seconds = statistics.median(timed(lambda: [masker(x, g) for _ in range(10)]) for _ in range(rounds))
    print(f"mask_samples_per_s={10 * batch / seconds:.0f}")


def bench_training(steps: int) -> None:
    demo = train_samples_per_s("ts_jepa_demo", ["synthetic=true"], steps)
    print(f"ts_jepa_demo_train_samples_per_s={demo:.1f}")
    cartpole = train_samples_per_s("ts_jepa", ["data.cartpole.train_trajectories=64",
                                               "data.cartpole.test_trajectories=16"], steps)
    print(f"ts_jepa_cartpole_train_samples_per_s={cartpole:.1f}")


def arrays(path: Path, length: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """`[N, C, T]` (resampled to `length`, default the longest series) and labels."""
    data = read_series(path, TimeSeriesDataConfig(path=str(path)))
    length = length or max(s.shape[1] for s in data.series)
    values, _ = align(data.series, length, "resample")
    return values.astype(np.float64), np.asarray(data.labels), length


def bench_minirocket(sets: dict[str, Path]) -> None:
    from aeon.classification.convolution_based import MiniRocketClassifier

    for name, train_path in sets.items():
        x_train, y_train, length = arrays(train_path)
        x_test, y_test, _ = arrays(train_path.with_name(f"{name}_TEST.ts"), length)
        model = MiniRocketClassifier(random_state=0).fit(x_train, y_train)
        print(f"minirocket_accuracy_{name}={float(np.mean(model.predict(x_test) == y_test)):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--train-steps", type=int, default=4)
    args = parser.parse_args()
    sets = shared_sets()
    with tempfile.TemporaryDirectory() as tmp:
        files = [p for s in sets.values() for p in (s, s.with_name(s.name.replace("TRAIN", "TEST")))]
        bench_reading(files or [generated_file(Path(tmp))], args.rounds)
    bench_masking(args.rounds)
    bench_training(args.train_steps)
    if load_from_ts_file is not None and sets:
        bench_minirocket(sets)


if __name__ == "__main__":
    main()
