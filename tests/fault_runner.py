"""Run the `polyjepa` command line with a fault injected at a chosen point.

    python fault_runner.py crash-before-replace N ARGS...
    python fault_runner.py sigterm-group-at-step K ARGS...

Both run `polyjepa.cli.main(ARGS)`, with:

`crash-before-replace N`: the N-th `os.replace` made by `polyjepa.checkpoint.save_atomic` kills the
process with `os._exit(9)` just before it would rename the fully written, fsynced temp file over
the previous checkpoint, the state a power cut or an OOM kill at that instant leaves behind. It
first prints `fault_runner: os._exit(9) before os.replace(TMP, DST)` to stderr.

`sigterm-group-at-step K`: at the start of step K the process sends SIGTERM to its own process
group, as `scancel`, `systemctl stop` or `kill -TERM -PGID` do, then waits until each of its
DataLoader workers has died or is seen to ignore SIGTERM (at most 3 s) before training the
step. The process must lead its own process group (start it with `start_new_session=True`);
otherwise it refuses.

Used by `test_faults.py`: these faults cannot be injected into the pytest process itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def crash_before_replace(crash_at: int) -> None:
    from polyjepa import checkpoint, paths

    real_replace = os.replace
    calls = 0

    def replace(src, dst, *args, **kwargs):
        nonlocal calls
        # os.replace inside write_atomic, called by save_atomic: a checkpoint being saved
        if sys._getframe(2).f_code is checkpoint.save_atomic.__code__:
            calls += 1
            if calls == crash_at:
                print(f"fault_runner: os._exit(9) before os.replace({src}, {dst})", file=sys.stderr,
                      flush=True)
                sys.stdout.flush()
                os._exit(9)
        return real_replace(src, dst, *args, **kwargs)

    # paths.write_atomic calls `os.replace` through the `os` module, so patch it there
    paths.os.replace = replace


def _children() -> list[int]:
    pids: list[int] = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        pids += [int(p) for p in children.read_text().split()]
    return pids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ignores_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(ignored.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def sigterm_group_at_step(step: int) -> None:
    from polyjepa.train import Trainer

    if os.getpgrp() != os.getpid():
        sys.exit("fault_runner: sigterm-group-at-step needs its own process group "
                 "(start_new_session=True)")
    original = Trainer._train_step

    def train_step(self, batches):
        if self.step + 1 == step:
            workers = _children()
            print(f"fault_runner: SIGTERM to process group {os.getpgrp()} at step {step} "
                  f"(workers {workers})", file=sys.stderr, flush=True)
            os.killpg(os.getpgrp(), signal.SIGTERM)
            deadline = time.monotonic() + 3
            while (any(_alive(pid) and not _ignores_sigterm(pid) for pid in workers)
                   and time.monotonic() < deadline):
                time.sleep(0.01)
        return original(self, batches)

    Trainer._train_step = train_step


FAULTS = {"crash-before-replace": crash_before_replace,
          "sigterm-group-at-step": sigterm_group_at_step}


def main(argv: list[str]) -> int:
    from polyjepa.cli import main as cli_main

    FAULTS[argv[0]](int(argv[1]))
    return cli_main(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
