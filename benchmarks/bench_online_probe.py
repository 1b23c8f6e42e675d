"""Cost of the trainer's online probe (`train.probe_every`) relative to the training it rides on.

One probe (embed `train.probe_samples` training and validation samples, fit kNN + a ridge
classifier) against `probe_every` training steps of the same recipe, timed in interleaved
rounds in one process. Prints machine-readable lines:

    train_step_s=<median seconds per training step>
    online_probe_s=<median seconds per probe>
    online_probe_cost_fraction=<probe seconds / (probe_every x step seconds)>

The issue's budget is a fraction <= 0.05 at a demo's defaults.

Usage: python benchmarks/bench_online_probe.py [--recipe ts_jepa_demo] [--rounds 5] [key=value ...]
(`POLYJEPA_DATA_ROOT=../shared/data` for recipes that read the shared data; recipes without a
validation split get `data.val_fraction=0.1 train.probe_every=100`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from polyjepa.build import load_recipe
from polyjepa.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="ts_jepa_demo")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per round")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = ["train.progress=false", *args.overrides]
    recipe = load_recipe(args.recipe, overrides)
    if recipe.cfg.train.probe_every is None:
        recipe = load_recipe(args.recipe, ["data.val_fraction=0.1", "train.probe_every=100",
                                           *overrides])
    every = recipe.cfg.train.probe_every
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(recipe, Path(tmp))
        trainer.model.train()
        stream = trainer._batches()
        trainer._train_step(stream)  # warm-up both
        trainer._online_probe()
        steps, probes = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer._train_step(stream)
            steps.append((time.perf_counter() - t0) / args.steps)
            t0 = time.perf_counter()
            trainer._online_probe()
            probes.append(time.perf_counter() - t0)
        stream.close()
    step, probe = statistics.median(steps), statistics.median(probes)
    print(f"recipe={args.recipe}")
    print(f"probe_every={every}")
    print(f"probe_samples={recipe.cfg.train.probe_samples}")
    print(f"train_step_s={step:.4f}")
    print(f"online_probe_s={probe:.4f}")
    print(f"online_probe_cost_fraction={probe / (every * step):.4f}")


if __name__ == "__main__":
    main()
