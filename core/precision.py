"""Which precision `train.precision=auto` trains in, decided from the hardware.

CUDA: bf16 where the GPU supports it, else fp16. CPU: bf16 only where it is faster, which takes
three checks, because a CPU without native bf16 emulates it (about 60x slower than fp32 measured
on an AVX2-only EPYC) and one with it may still gain nothing on small layers:

1. the CPU reports native bf16 matmul (`amx_bf16` or `avx512_bf16` in `/proc/cpuinfo`);
2. a one-off micro-measurement — a `[512, 1024] x [1024, 1024]` linear layer, forward and
   backward, in fp32 and under bf16 autocast, median of interleaved rounds — finds bf16 at least
   `MIN_SPEEDUP` times faster with the current thread count;
3. the run's own step (the trainer times the recipe's forward and backward on its first batch in
   both, then restores every weight, buffer and random state) is at least `MIN_SPEEDUP` times
   faster in bf16: on a 2-core AMX Xeon bf16 is 1.9x on BYOL-A's CNN but 0.8x on T-JEPA's
   16-wide transformer, whose time goes to per-operation overhead. Single-process runs only
   (under DDP the ranks could disagree; checks 1-2 decide); a resumed run keeps its choice.

The measurement takes about a second and is cached per machine in
`<cache dir>/precision.json` (see `polyjepa.listing.cache_dir`), keyed by the CPU model, its
flags, torch's version and the thread count; `POLYJEPA_PRECISION_PROBE=0` skips it (the flags
alone decide).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from polyjepa.listing import cache_dir
from polyjepa.paths import write_atomic

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.2
"""bf16 must beat fp32 by this factor on the probe layer for `auto` to choose it."""
PROBE_ENV = "POLYJEPA_PRECISION_PROBE"


def cpu_info() -> str:
    """`/proc/cpuinfo`'s text ('' where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_native_bf16(info: str | None = None) -> bool:
    """True when the CPU reports native bf16 matmul (AMX or AVX512-BF16)."""
    flags = cpu_info() if info is None else info
    return "amx_bf16" in flags or "avx512_bf16" in flags


def measured_speedup(step: Callable[[torch.dtype | None], None], rounds: int = 3,
                     repeats: int = 2) -> float:
    """fp32 seconds / bf16 seconds of `step(dtype)` (`dtype` None: fp32), the median of `rounds`
    interleaved rounds of `repeats` calls each, after one warm-up call of each."""

    def timed(dtype: torch.dtype | None) -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            step(dtype)
        return time.perf_counter() - start

    step(None)  # warm-up: allocator, kernels
    step(torch.bfloat16)
    ratios = []
    for r in range(rounds):
        if r % 2:
            bf16, fp32 = timed(torch.bfloat16), timed(None)
        else:
            fp32, bf16 = timed(None), timed(torch.bfloat16)
        ratios.append(fp32 / bf16)
    return statistics.median(ratios)


def measure_bf16_speedup(rounds: int = 5) -> float:
    """`measured_speedup` of one `[512, 1024] x [1024, 1024]` linear layer's forward and backward."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 1024, generator=g)
    layer = torch.nn.Linear(1024, 1024)

    def step(dtype: torch.dtype | None) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            loss = layer(x).float().square().mean()
        loss.backward()

    ratio = measured_speedup(step, rounds, repeats=3)
    layer.zero_grad(set_to_none=True)
    return ratio


def _machine_key(info: str) -> str:
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), "unknown cpu")
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return f"{model}|{digest}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def cpu_bf16_is_faster() -> bool:
    """The CPU rule above: native bf16, and measured (or cached) faster than fp32."""
    info = cpu_info()
    if not cpu_has_native_bf16(info):
        return False
    if os.environ.get(PROBE_ENV, "1") == "0":
        return True
    path, key = cache_dir() / "precision.json", _machine_key(info)
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    if key not in cached:
        cached[key] = measure_bf16_speedup()
        log.info("bf16 on this CPU: %.2fx fp32 on the probe layer (cached in %s)", cached[key], path)
        try:
            write_atomic(path, json.dumps(cached, indent=1).encode())
        except OSError:  # a read-only cache: measure again next time
            pass
    return float(cached[key]) >= MIN_SPEEDUP


def auto_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype `train.precision=auto` picks on `device` (None: fp32)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16_is_faster():
        return torch.bfloat16
    return None
