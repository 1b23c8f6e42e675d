"""DDP scaling and checkpoint overhead on this machine, for the T-JEPA demo recipe.

Prints machine-readable lines:

    samples_per_s_1proc=<float>
    samples_per_s_2proc=<float>
    ddp_scaling_2proc=<2-process samples/s / 1-process samples/s>
    checkpoint_save_s=<float>
    checkpoint_overhead=<save time / (checkpoint_every x step time)>

Both throughputs come from the runs' own metrics.jsonl (global samples/s, steady-state rows only),
measured one after the other in this process's lifetime. On a 2-core machine the 2-process run
gives each rank one core, so the ratio says what DDP's communication costs, not a speed-up.

Usage: python benchmarks/bench_ddp.py [--steps 60] [--recipe t_jepa_demo]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polyjepa.build import load_recipe
from polyjepa.train import Trainer


def throughput(nproc: int, recipe: str, steps: int, out: Path) -> float:
    args = [recipe, f"train.max_steps={steps}", "train.log_every=5", "train.progress=false",
            f"train.checkpoint_every={steps}", "--out", str(out)]
    if nproc == 1:
        cmd = [sys.executable, "-m", "polyjepa", "pretrain", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "polyjepa", "pretrain", *args]
    subprocess.run(cmd, check=True, capture_output=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["samples_per_s"] for r in rows[2:])  # skip warm-up rows


def checkpoint_overhead(recipe: str, out: Path) -> tuple[float, float]:
    built = load_recipe(recipe, ["train.progress=false"])
    trainer = Trainer(built, out)
    out.mkdir(parents=True, exist_ok=True)
    batches = trainer._batches()
    trainer._train_step(batches)
    t0 = time.perf_counter()
    for _ in range(10):
        trainer._train_step(batches)
    step_s = (time.perf_counter() - t0) / 10
    saves = []
    for _ in range(5):
        t0 = time.perf_counter()
        trainer.save()
        saves.append(time.perf_counter() - t0)
    save_s = statistics.median(saves)
    return save_s, save_s / (built.cfg.train.checkpoint_every * step_s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--recipe", default="t_jepa_demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = throughput(1, args.recipe, args.steps, Path(tmp) / "one")
        two = throughput(2, args.recipe, args.steps, Path(tmp) / "two")
        save_s, overhead = checkpoint_overhead(args.recipe, Path(tmp) / "ckpt")
    print(f"samples_per_s_1proc={one:.1f}")
    print(f"samples_per_s_2proc={two:.1f}")
    print(f"ddp_scaling_2proc={two / one:.3f}")
    print(f"checkpoint_save_s={save_s:.4f}")
    print(f"checkpoint_overhead={overhead:.5f}")


if __name__ == "__main__":
    main()
