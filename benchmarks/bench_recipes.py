"""Training throughput of every demo recipe against the machine's own peak (issue 19).

For each recipe, in one run on this machine:
- FLOPs per training sample: one real training step (forward, backward, target/EMA update,
  device-side augmentations) under `torch.utils.flop_counter.FlopCounterMode`;
- where the step's time goes: the shares of a few steps' profiled self time spent in matrix
  products and convolutions, attention, normalization, the other ATen operations (pointwise,
  reductions, copies: memory- or per-operation-bound), the optimizer, the data loader and the
  framework (`<recipe>.time_share_<kind>=`), so a recipe far from peak shows what bounds it;
- steady-state samples/s of the trainer's own step (warm-up steps excluded), the median of
  interleaved rounds, each round a fresh process per variant; achieved GFLOP/s and the fraction
  of the machine's measured matmul peak (fp32; bf16 for the bf16 variant);
- variants: `fp32` (eager), `compile` (`train.compile=true`), `bf16` (autocast; only where the
  CPU has native bf16, or on CUDA), `data` (the data pipeline alone: loader, collate, transfer,
  frontend and device-side augmentations, no model step), so the table shows whether the model
  or the data bounds a step; `unfused` (`optim.fused=false`: AdamW's per-tensor loop, printing
  `<recipe>.fused_adamw_speedup=`); `contiguous` (`train.channels_last=false`, printing
  `<recipe>.channels_last_speedup=`); `unpooled` (`train.reuse_memory=false`: glibc's default
  malloc, printing `<recipe>.reuse_memory_speedup=`);
- `--baseline REV`: the same recipes at another commit (built from a temporary `git worktree`,
  run in their own processes, interleaved with the current tree's), printing
  `<recipe>.speedup_vs_<REV>=<current fp32 samples/s / REV's>` per recipe (the median of the
  per-round ratios).

Output: `name=value` lines, then a table. Timings vary between machines and runs: compare the
ratios within one run. Data: `--data-root` (default `$POLYJEPA_DATA_ROOT`, else ../shared/data
next to the clone when present); recipes whose data is missing run on their plugin's synthetic
data (`--synthetic` forces that for all).

Usage:
    python benchmarks/bench_recipes.py [--recipes t_jepa_demo,byol_a_demo] [--steps 8]
        [--rounds 3] [--variants fp32,compile,bf16,data] [--baseline be4dc91] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANT_OVERRIDES = {"compile": ["train.compile=true"], "unfused": ["optim.fused=false"],
                     "contiguous": ["train.channels_last=false"],
                     "unpooled": ["train.reuse_memory=false"]}
"""Variants that are the fp32 step with other settings."""
LEVERS = {"unfused": "fused_adamw", "contiguous": "channels_last", "unpooled": "reuse_memory"}
"""Variants that turn one default lever off: `<recipe>.<lever>_speedup=` is fp32 over them."""
RESULT = "RESULT "  # a worker's one line of JSON


# ------------------------------------------------------------------------------ the worker side
def _trainer(spec: dict):
    """A trainer of `spec["recipe"]` in a throw-away run directory (the API as of be4dc91)."""
    import warnings

    from polyjepa.build import load_recipe
    from polyjepa.train import Trainer

    overrides = ["train.progress=false", f"train.device={spec['device']}",
                 f"train.precision={spec['precision']}", *spec["overrides"]]
    recipe = load_recipe(spec["recipe"], overrides)
    warnings.simplefilter("ignore")  # data warnings (resampled clouds, ...) are not news here
    return Trainer(recipe, Path(spec["tmp"]))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


SHARES = {"matmul_conv": "mm/conv", "attention": "attn", "normalization": "norm",
          "elementwise": "elem", "optimizer": "opt", "data": "data", "framework": "fw"}
"""Where a step's time goes (`<recipe>.time_share_<kind>=`), and the table's short names."""


def op_kind(name: str) -> str:
    """The `SHARES` kind of a profiler event: matrix products and convolutions (compute-bound),
    attention kernels, Batch/LayerNorm, the other operators (ATen's pointwise, reductions, copies,
    indexing; torchvision's: memory- or per-operation-bound), the optimizer, the data loader, and
    the framework itself (autograd engine, Python)."""
    if "scaled_dot_product" in name:
        return "attention"
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm") or "convolution" in name:
        return "matmul_conv"
    if "batch_norm" in name or "layer_norm" in name:
        return "normalization"
    if "adamw" in name.lower() or name.startswith("Optimizer."):
        return "optimizer"
    if "DataLoader" in name:
        return "data"
    return "elementwise" if "::" in name and not name.startswith("autograd::") else "framework"


def time_shares(trainer, batches, steps: int, device: str) -> dict[str, float]:
    """Each `SHARES` kind's share of the self time of `steps` training steps (torch.profiler; the
    device's time on CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda")
                                           else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            trainer._train_step(batches)
        _sync(device)
    totals = dict.fromkeys(SHARES, 0.0)
    for event in prof.key_averages():
        cost = event.self_device_time_total if device.startswith("cuda") else event.self_cpu_time_total
        totals[op_kind(event.key)] += cost
    whole = sum(totals.values()) or 1.0
    return {kind: value / whole for kind, value in totals.items()}


def _batch_size(trainer) -> int:
    return int(getattr(trainer, "batch_size", trainer.cfg.train.batch_size)) * int(
        trainer.cfg.train.accumulate)


def worker(spec: dict) -> dict:
    """Measure one variant of one recipe in this process."""
    import torch

    trainer = _trainer(spec)
    batches = trainer._batches()
    size = _batch_size(trainer)
    if spec["variant"] == "flops":
        from torch.utils.flop_counter import FlopCounterMode

        trainer._train_step(batches)  # lazily built state (optimizer moments, caches)
        shares = time_shares(trainer, batches, spec["warmup"], spec["device"])
        try:
            with FlopCounterMode(display=False) as counter:
                trainer._train_step(batches)
        except RuntimeError as exc:  # e.g. a step that calls autograd.grad (latent inference)
            return {"shares": shares, "flops_error": str(exc).splitlines()[0]}
        return {"flops_per_sample": counter.get_total_flops() / size, "shares": shares}
    if spec["variant"] == "data":
        objective, device = trainer.objective, trainer.device
        chain = getattr(objective, "augmentations", [])  # BYOL / LeJEPA's device-side views

        def one() -> None:
            batch = next(batches).to(device)
            with torch.no_grad():
                features = objective.online.features(batch.x)
                generator = torch.Generator().manual_seed(batch.seed)
                for augment in chain:
                    features = augment(features, generator)
    else:
        def one() -> None:
            trainer._train_step(batches)
    for _ in range(spec["warmup"]):
        one()
    _sync(spec["device"])
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        one()
    _sync(spec["device"])
    return {"samples_per_s": spec["steps"] * size / (time.perf_counter() - start)}


# ------------------------------------------------------------------------------ the driver side
def matmul_peak(device: str, dtype_name: str, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an `n x n` matmul in `dtype`: the fastest of `reps` (a peak is what the machine
    can do; the median moved 141-180 GFLOP/s between runs on one quiet 2-core machine)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for _ in range(reps + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times[1:]) / 1e9


def bf16_kind(device: str) -> str:
    """`cuda`, `native` (AMX or AVX512-BF16) or `emulated`."""
    if device.startswith("cuda"):
        return "cuda"
    from polyjepa.precision import cpu_has_native_bf16

    return "native" if cpu_has_native_bf16() else "emulated"


def cpu_model() -> str:
    from polyjepa.precision import cpu_info

    return next((line.split(":", 1)[1].strip() for line in cpu_info().splitlines()
                 if line.startswith("model name")), "unknown")


def demo_recipes() -> list[str]:
    from polyjepa.catalog import summary_rows

    return [row["name"] for row in summary_rows() if row["scale"] == "demo"]


def run_worker(spec: dict, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        spec = {**spec, "tmp": tmp}
        done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                              capture_output=True, text=True, cwd=tmp)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][:200]}
    return json.loads(lines[-1][len(RESULT):])


def build_baseline(rev: str, into: Path) -> str:
    """Install the package at `rev` (a temporary worktree) into `into`; its path for PYTHONPATH."""
    tree = into / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
                   check=True, capture_output=True)
    lib = into / "lib"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(lib), str(tree)], check=True, capture_output=True)
    return str(lib)


def drop_baseline(into: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(into / "tree")],
                   capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--recipes", default=None, help="comma-separated (default: every demo)")
    parser.add_argument("--variants", default="fp32,compile,bf16,data")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="a commit to compare fp32 with")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--synthetic", action="store_true", help="synthetic data for every recipe")
    args = parser.parse_args()
    if args.worker:
        print(RESULT + json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    import torch

    root = args.data_root or os.environ.get("POLYJEPA_DATA_ROOT")
    if root is None and (REPO.parent / "shared" / "data").is_dir():
        root = str(REPO.parent / "shared" / "data")
    recipes = args.recipes.split(",") if args.recipes else demo_recipes()
    kind = bf16_kind(args.device)
    variants = [v for v in args.variants.split(",") if v != "bf16" or kind != "emulated"]
    peak = {"fp32": matmul_peak(args.device, "float32")}
    if kind != "emulated":
        peak["bf16"] = matmul_peak(args.device, "bfloat16")
    print(f"machine={cpu_model() if args.device == 'cpu' else torch.cuda.get_device_name()}")
    print(f"threads={torch.get_num_threads()}")
    print(f"bf16={kind}" + ("" if kind != "emulated" else " (bf16 variant skipped: emulated)"))
    for name, value in peak.items():
        print(f"peak_{name}_gflops={value:.1f}")

    baseline_dir = Path(tempfile.mkdtemp(prefix="bench_baseline_"))
    baseline_lib = build_baseline(args.baseline, baseline_dir) if args.baseline else None
    table = []
    try:
        for recipe in recipes:
            synthetic = args.synthetic
            overrides = ["synthetic=true"] if synthetic else ([f"data_root={root}"] if root else [])
            base = {"recipe": recipe, "device": args.device, "steps": args.steps,
                    "warmup": args.warmup, "overrides": overrides, "precision": "fp32"}
            counted = run_worker({**base, "variant": "flops"}, None)
            if "error" in counted and not synthetic:  # its data is not here: synthetic data
                synthetic, overrides = True, ["synthetic=true"]
                base["overrides"] = overrides
                counted = run_worker({**base, "variant": "flops"}, None)
            flops, shares = counted.get("flops_per_sample"), counted.get("shares", {})
            runs: list[tuple[str, str | None, dict]] = []
            for variant in variants:
                spec = {**base, "variant": variant}
                if variant in VARIANT_OVERRIDES:
                    spec["overrides"] = [*overrides, *VARIANT_OVERRIDES[variant]]
                if variant == "bf16":
                    spec["precision"] = "bf16"
                runs.append((variant, None, spec))
            if baseline_lib:
                runs.append((f"at_{args.baseline}", baseline_lib, {**base, "variant": "fp32"}))
            rates: dict[str, list[float]] = {name: [] for name, _, _ in runs}
            errors: dict[str, str] = {}
            for r in range(args.rounds):
                for name, lib, spec in (runs if r % 2 == 0 else runs[::-1]):  # interleaved
                    out = run_worker(spec, lib)
                    if "error" in out:
                        errors[name] = out["error"]
                    else:
                        rates[name].append(out["samples_per_s"])
            row = {"recipe": recipe, "source": "synthetic" if synthetic else "demo data",
                   "flops_per_sample": flops, "shares": shares}
            print(f"{recipe}.data_source={row['source']}")
            if flops:
                print(f"{recipe}.gflops_per_sample={flops / 1e9:.4f}")
            elif "flops_error" in counted:
                print(f"{recipe}.flops_error=FlopCounterMode failed: {counted['flops_error']}")
            for kind, share in shares.items():
                print(f"{recipe}.time_share_{kind}={share:.3f}")
            for name, values in rates.items():
                if not values:
                    print(f"{recipe}.{name}_error={errors.get(name, 'no result')}")
                    continue
                rate = statistics.median(values)
                row[name] = rate
                print(f"{recipe}.{name}_samples_per_s={rate:.2f}")
                if flops and name in ("fp32", "compile", "bf16"):
                    achieved = rate * flops / 1e9
                    ref = peak["bf16" if name == "bf16" else "fp32"]
                    row[f"{name}_peak"] = achieved / ref
                    print(f"{recipe}.{name}_gflops={achieved:.2f}")
                    print(f"{recipe}.{name}_fraction_of_peak={achieved / ref:.4f}")
            for variant, lever in LEVERS.items():  # each default lever's share of the step
                if rates.get("fp32") and rates.get(variant):
                    ratios = [a / b for a, b in zip(rates["fp32"], rates[variant], strict=False)]
                    row[f"{lever}_speedup"] = statistics.median(ratios)
                    print(f"{recipe}.{lever}_speedup={row[f'{lever}_speedup']:.3f}")
            if baseline_lib and rates.get("fp32") and rates.get(f"at_{args.baseline}"):
                ratios = [a / b for a, b in zip(rates["fp32"], rates[f"at_{args.baseline}"],
                                                strict=False)]
                row["speedup"] = statistics.median(ratios)
                print(f"{recipe}.speedup_vs_{args.baseline}={row['speedup']:.3f}")
            sys.stdout.flush()
            table.append(row)
    finally:
        if baseline_lib:
            drop_baseline(baseline_dir)

    cols = [c for c in ("fp32", "compile", "bf16", *LEVERS, "data") if c in variants]
    cols += [f"at_{args.baseline}"] if args.baseline else []
    print("\n| recipe | GFLOP/sample | " + " | ".join(f"{c} samples/s" for c in cols)
          + " | fp32 % of peak | " + ("speedup | " if args.baseline else "")
          + "where the fp32 step's time goes (%) |")
    print("|---|---|" + "---|" * (len(cols) + 2 + bool(args.baseline)))
    for row in table:
        flops = row["flops_per_sample"]
        cells = [f"{row[c]:.1f}" if c in row else "-" for c in cols]
        share = f"{100 * row['fp32_peak']:.1f}" if "fp32_peak" in row else "-"
        speed = [f"{row['speedup']:.2f}x" if "speedup" in row else "-"] if args.baseline else []
        print(f"| {row['recipe']} | {flops / 1e9:.3f} | " if flops else f"| {row['recipe']} | - | ",
              end="")
        where = " ".join(f"{SHARES[k]} {100 * v:.0f}" for k, v in
                         sorted(row["shares"].items(), key=lambda kv: -kv[1]) if v >= 0.005)
        print(" | ".join([*cells, share, *speed, where or "-"]) + " |")


if __name__ == "__main__":
    main()
