"""Trainer overhead: polyjepa's training step vs a minimal hand-written PyTorch loop.

Both train the same T-JEPA model (t_jepa_demo, fp32) on the same batches; rounds are interleaved in
one process (ABBA order) so machine noise hits both alike. Prints machine-readable lines:

    trainer_samples_per_s=<float>
    plain_samples_per_s=<float>
    trainer_overhead_ratio=<polyjepa samples/s / plain samples/s>

Usage: python benchmarks/bench_trainer_overhead.py [--rounds 8] [--steps 10] [key=value ...]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from polyjepa.build import load_recipe
from polyjepa.ema import momentum_at
from polyjepa.train import Trainer


def plain_loop(objective: torch.nn.Module, batches: list, cfg) -> None:
    """What a user would write by hand: forward, backward, AdamW step, EMA update."""
    params = [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    for step, batch in enumerate(batches, 1):
        loss, _ = objective(batch)
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        objective.update_target(momentum_at(step, cfg.train.max_steps, cfg.ema.start, cfg.ema.end,
                                            cfg.ema.schedule))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--recipe", default="t_jepa_demo")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, ["train.progress=false", "train.precision=fp32",
                                       *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, Path(tmp))
        plain_objective = copy.deepcopy(trainer.objective)
        stream = trainer._batches()
        batches = list(itertools.islice(trainer.loader, args.steps))  # same collate, in memory
        bs = recipe.cfg.train.batch_size
        trainer._train_step(stream)  # warm-up both
        plain_loop(plain_objective, batches[:1], recipe.cfg)
        ours, plain = [], []

        def time_ours() -> None:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer._train_step(stream)
            ours.append(args.steps * bs / (time.perf_counter() - t0))

        def time_plain() -> None:
            t0 = time.perf_counter()
            plain_loop(plain_objective, batches, recipe.cfg)
            plain.append(args.steps * bs / (time.perf_counter() - t0))

        for r in range(args.rounds):  # alternate which goes first (ABBA) so drift cancels
            for run in ((time_ours, time_plain) if r % 2 == 0 else (time_plain, time_ours)):
                run()
    ratios = [o / p for o, p in zip(ours, plain, strict=True)]
    print(f"trainer_samples_per_s={statistics.median(ours):.1f}")
    print(f"plain_samples_per_s={statistics.median(plain):.1f}")
    print(f"trainer_overhead_ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
