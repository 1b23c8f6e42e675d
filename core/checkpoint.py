"""Atomic checkpoint files, loaded safely (`weights_only=True`) with errors that say what broke."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from polyjepa.errors import CheckpointError, ConfigError
from polyjepa.paths import write_atomic

LOCK_FILE = ".lock"  # in a run directory while a process trains into it
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive format
PICKLE_PROTO = b"\x80"  # first byte of a pickle (protocol >= 2)


def save_atomic(obj: Any, path: Path) -> None:
    """Write `obj` with `torch.save` to a temp file beside `path`, fsync, then `os.replace`.

    A crash or a full disk leaves the previous file at `path` untouched.
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a crash inside a save
        stale.unlink(missing_ok=True)
    write_atomic(path, lambda f: torch.save(obj, f))


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict, detached and on the CPU, as files store it."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def load_file(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by polyjepa (tensors and plain containers only).

    Raises:
        CheckpointError: missing, truncated/corrupt, or holding pickled code (refused).
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        with path.open("rb") as f:
            head = f.read(4)
        if not (head == ZIP_MAGIC or head[:1] == PICKLE_PROTO):  # neither zip nor pickle: damaged
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint") from None
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data "
            f"(weights_only=True); only load checkpoints you trust ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({exc})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a polyjepa checkpoint (got {type(obj).__name__})")
    return obj


def load_state(module: nn.Module, state: dict, path: Path) -> None:
    """`module.load_state_dict(state)` with a message listing mismatched keys and shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatches: " + "; ".join(shapes[:10]))
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:10])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:10])}")
        raise CheckpointError(
            f"{path}: checkpoint does not fit this model (another architecture?): "
            + " | ".join(parts)
        )
    module.load_state_dict(state)


def lock_run_dir(run_dir: Path, flag: str = "--out") -> IO[str] | None:
    """Hold `run_dir/.lock` (an advisory lock) for as long as the returned file stays open.

    Two processes training into one folder would truncate each other's `metrics.jsonl` and
    checkpoints; the second is refused instead, naming the process that holds the folder. The
    lock goes with the process (closed file, exit or crash), so a killed run never leaves a
    stale lock, and processes it forks never hold it. Returns None where the platform has no
    `fcntl` (Windows): no lock is taken.
    """
    try:
        import fcntl
    except ImportError:
        return None
    handle = (run_dir / LOCK_FILE).open("a+")
    try:  # a POSIX record lock: owned by this process alone, not by DataLoader workers it forks
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"{flag} {run_dir} is in use by {holder}, which is training into it; wait for it, "
            f"stop it, or choose another {flag}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    return handle
