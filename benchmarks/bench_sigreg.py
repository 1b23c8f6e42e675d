"""SIGReg's cost: against the rest of a LeJEPA demo's training step, and against VCReg, as the
batch B and the width D grow (forward + backward, fp32, one process).

SIGReg projects `[B, D]` on M directions (B D M) and evaluates the characteristic function at
T knots (B M T): linear in B and in D. VCReg's covariance is B D²: quadratic in D. Prints:

    sigreg_share_of_step=<SIGReg seconds / training-step seconds, le_jepa_tabular_demo>
    sigreg_over_vcreg_B<b>=... / sigreg_over_vcreg_D<d>=...   (interleaved rounds, medians)
    sigreg_exponent_batch=<slope of log time vs log B>   (about 1: linear)
    sigreg_exponent_width=<slope of log time vs log D>   (at most 1)
    vcreg_exponent_width=<slope of log time vs log D>    (towards 2)

Usage: python benchmarks/bench_sigreg.py [--rounds 5] [--slices 1024]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import torch
from timing import abba, timed, train_samples_per_s

from polyjepa.regularizers import SIGReg, VarianceCovariance

BATCHES = (64, 128, 256, 512, 1024)
WIDTHS = (32, 64, 128, 256, 512)


def forward_backward(reg: torch.nn.Module, z: torch.Tensor) -> Callable[[], None]:
    """One forward and backward of `reg` on a fresh leaf copy of `z`."""

    def run() -> None:
        x = z.detach().requires_grad_()
        loss, _ = reg(x)
        loss.backward()
    return run


def exponent(sizes: tuple[int, ...], seconds: list[float]) -> float:
    """Slope of log(seconds) against log(size), least squares."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def sweep(sizes: tuple[int, ...], shape: Callable[[int], tuple[int, int]], sigreg: SIGReg,
          vcreg: VarianceCovariance, rounds: int, name: str) -> tuple[list[float], list[float]]:
    """Median seconds of SIGReg and VCReg at each size, printing their ratio."""
    sig_s, vc_s = [], []
    for size in sizes:
        z = torch.randn(*shape(size))
        t_vc, t_sig, ratio = abba(forward_backward(vcreg, z), forward_backward(sigreg, z), rounds)
        sig_s.append(t_sig)
        vc_s.append(t_vc)
        print(f"sigreg_over_vcreg_{name}{size}={ratio:.3f}")
    return sig_s, vc_s


def step_share(slices: int, rounds: int) -> float:
    """SIGReg's seconds (two views of the demo's projections) over one training step of
    le_jepa_tabular_demo on the same machine."""
    recipe = "le_jepa_tabular_demo"
    batch = 256
    per_s = train_samples_per_s(recipe, [f"objective.num_slices={slices}"], steps=5)
    step_s = batch / per_s
    reg = SIGReg(num_slices=slices)
    views = torch.randn(2, batch, 64)

    def sigreg_part() -> None:
        x = views.detach().requires_grad_()
        torch.stack([reg.statistic(x[i]) for i in range(2)]).mean().backward()

    sigreg_part()
    sig_s = statistics.median(timed(sigreg_part) for _ in range(rounds))
    print(f"train_step_s={step_s:.4f}")
    print(f"sigreg_s={sig_s:.4f}")
    return sig_s / step_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slices", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(0)
    sigreg, vcreg = SIGReg(num_slices=args.slices), VarianceCovariance()
    print(f"threads={torch.get_num_threads()}")
    print(f"sigreg_share_of_step={step_share(args.slices, args.rounds):.3f}")
    sig_b, _ = sweep(BATCHES, lambda b: (b, 128), sigreg, vcreg, args.rounds, "B")
    sig_d, vc_d = sweep(WIDTHS, lambda d: (256, d), sigreg, vcreg, args.rounds, "D")
    print(f"sigreg_exponent_batch={exponent(BATCHES, sig_b):.2f}")
    print(f"sigreg_exponent_width={exponent(WIDTHS, sig_d):.2f}")
    print(f"vcreg_exponent_width={exponent(WIDTHS, vc_d):.2f}")


if __name__ == "__main__":
    main()
