"""Process groups for DDP under torchrun: ranks, world size and devices come from the environment.

`torchrun` (single- or multi-node) sets RANK, WORLD_SIZE and LOCAL_RANK; without them a run is a
single process and nothing here does anything. gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device, timeout_minutes: float = 10.0) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; returns `(info, device of this rank)`.

    On CUDA each rank takes `cuda:LOCAL_RANK`. The timeout bounds how long a rank waits for one that
    died (torchrun also tears the group down when a worker exits with an error).
    """
    info = dist_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(minutes=timeout_minutes))
    return info, device


def all_gather_with_grad(z: Tensor) -> Tensor:
    """Concatenate `z [B, ...]` from every rank along dim 0, keeping gradients to the local part.

    Identity when not distributed. Used where a statistic spans the global batch (VCReg).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(z), dim=0)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any rank (e.g. a stop request)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj: object) -> list[object]:
    """`[obj from rank 0, obj from rank 1, ...]` on every rank (`[obj]` when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
