"""Start-up time of the command line: `polyjepa --help`, `--version`, `recipes` and `list`, each
in a fresh interpreter (median of `--rounds` runs after one warm-up), beside a bare
`python -c pass` and `python -c "import torch"` on the same machine. Prints:

    python_s=<seconds>  torch_import_s=<seconds>
    help_s=... version_s=... recipes_s=... list_s=... list_refresh_s=...
    help_over_torch=<help_s / torch_import_s>   (well under 1: --help does not import torch)
    list_over_torch=<list_s / torch_import_s>   (well under 1: answered from the cache file)

`list --refresh` imports every plugin (and torch), as the first `list` after an install or an
edit of a plugin does; a plain `list` reads the cache file (`polyjepa.listing`).

Usage: python benchmarks/bench_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {"help": ["--help"], "version": ["--version"], "recipes": ["recipes"], "list": ["list"],
            "list_refresh": ["list", "--refresh"]}


def seconds(argv: list[str], rounds: int) -> float:
    subprocess.run(argv, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    python = seconds([sys.executable, "-c", "pass"], rounds)
    torch_s = seconds([sys.executable, "-c", "import torch"], rounds)
    print(f"python_s={python:.3f}")
    print(f"torch_import_s={torch_s:.3f}")
    results = {name: seconds([sys.executable, "-m", "polyjepa", *args], rounds)
               for name, args in COMMANDS.items()}
    for name, value in results.items():
        print(f"{name}_s={value:.3f}")
    print(f"help_over_torch={results['help'] / torch_s:.3f}")
    print(f"list_over_torch={results['list'] / torch_s:.3f}")


if __name__ == "__main__":
    main()
