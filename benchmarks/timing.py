"""Timing helpers shared by the benchmarks: these machines are shared and noisy, so compare two
things in interleaved rounds and read the median of per-round ratios, never one absolute time."""

from __future__ import annotations

import statistics
import time


def timed(fn) -> float:
    """Seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def abba(a, b, rounds: int) -> tuple[float, float, float]:
    """Median seconds of `a` and `b` over `rounds` rounds run in ABBA order, and the median of
    the per-round ratios `b / a`."""
    ta, tb = [], []
    for r in range(rounds):
        pair = (a, b) if r % 2 == 0 else (b, a)
        t = [timed(fn) for fn in pair]
        ta.append(t[0] if r % 2 == 0 else t[1])
        tb.append(t[1] if r % 2 == 0 else t[0])
    ratios = [y / x for x, y in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def train_samples_per_s(recipe: str, overrides: list[str], steps: int) -> float:
    """Training samples per second of `steps` steps of a shipped recipe (after one warm-up
    step), through the real trainer, in a throw-away run directory."""
    import tempfile
    import warnings
    from pathlib import Path

    from polyjepa.build import load_recipe
    from polyjepa.train import Trainer

    loaded = load_recipe(recipe, ["train.progress=false", *overrides])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # data warnings (resampled clouds, ...) are not news here
        trainer = Trainer(loaded, Path(tmp))
        batches = trainer._batches()
        trainer._train_step(batches)  # warm-up
        seconds = timed(lambda: [trainer._train_step(batches) for _ in range(steps)])
    return steps * loaded.cfg.train.batch_size / seconds
