"""Process groups for DDP under torchrun: ranks, world size and devices come from the environment.

`torchrun` (single- or multi-node) sets RANK, WORLD_SIZE and LOCAL_RANK; without them a run is a
single process and nothing here does anything. gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel


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


def shutdown_distributed() -> None:
    """Leave the process group once this rank's work is done (after a final barrier, so no rank
    tears down gloo's threads while another still talks to it; exiting with a live group let
    gloo abort a rank at interpreter exit: "terminate called without an active exception")."""
    global _stats_group
    if _active():
        dist.barrier()
        dist.destroy_process_group()
        _stats_group = None


def _active() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def all_gather_with_grad(z: Tensor) -> Tensor:
    """Concatenate `z [B, ...]` from every rank along dim 0, keeping gradients to the local part.

    Identity when not distributed. Used where a statistic spans the global batch (VCReg).
    """
    if not _active() or dist.get_world_size() == 1:
        return z
    return _AllGather.apply(z)


def all_reduce_mean_with_grad(x: Tensor) -> Tensor:
    """The mean of `x` over ranks (every rank's `x` has the same shape), on every rank, with the
    gradient of that mean flowing back to each rank's `x`: a statistic of the global batch from
    per-rank averages (SIGReg's characteristic function) is then exactly the single-process one
    (DDP's gradient averaging included). Identity when not distributed."""
    if not _active() or dist.get_world_size() == 1:
        return x
    return _AllReduceMean.apply(x)


_stats_group = None


def _statistics_group() -> dist.ProcessGroup:
    """A process group of its own for batch-statistic collectives: their backward runs while DDP
    all-reduces gradient buckets, and two streams of collectives on one group can interleave
    differently on different ranks (measured: wrong gradients)."""
    global _stats_group
    if _stats_group is None:
        _stats_group = dist.new_group()
    return _stats_group


class _AllGather(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient and returns this rank's slice."""

    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:
        parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, z.contiguous(), group=_statistics_group())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # never reduce autograd's buffer
        dist.all_reduce(grad, group=_statistics_group())
        return grad.chunk(dist.get_world_size(), dim=0)[dist.get_rank()]


class _AllReduceMean(torch.autograd.Function):
    """Mean over ranks; its backward is the same mean of the incoming gradients (every rank's
    loss reads the mean, and DDP then averages the parameter gradients over ranks)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x, group=_statistics_group())
        return x / dist.get_world_size()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=_statistics_group())
        return grad / dist.get_world_size()


def global_batch_size(local: int) -> int:
    """Samples in the global batch when every rank holds `local` of them."""
    return local * (dist.get_world_size() if _active() else 1)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any rank (e.g. a stop request)."""
    if not _active():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj: object) -> list[object]:
    """`[obj from rank 0, obj from rank 1, ...]` on every rank (`[obj]` when not distributed)."""
    if not _active():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics span the global batch of all DDP ranks.

    Works on CPU (gloo) and CUDA alike, unlike `nn.SyncBatchNorm` (CUDA only). Outside DDP, or in
    eval mode, it is plain BatchNorm. Gradients flow through the gathered statistics back to each
    rank's inputs, so one DDP step equals one single-process step on the concatenated batch.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects [B, C, ...] input, got shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not _active():
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        everyone = all_gather_with_grad(x)  # [W * B, C, ...]
        mean = everyone.mean(dims)
        var = everyone.var(dims, unbiased=False)
        if self.track_running_stats:
            n = everyone.numel() // x.shape[1]
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1), m)
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm in `module` by a `GlobalBatchNorm` holding the same state."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new.to(next(iter(module.state_dict().values())).device)
    for name, child in module.named_children():
        setattr(module, name, convert_global_batchnorm(child))
    return module


def wrap_ddp(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """`DistributedDataParallel(module)` for this rank's device.

    Buffers of modules marked `rank_local` stay each process's own (DDP would otherwise overwrite
    them with rank 0's at every forward).

    With `GlobalBatchNorm` layers (collectives inside backward), DDP's reducer must search the
    graph for ready parameters (`find_unused_parameters=True`): without it the gradients of a
    BYOL step were measured to stay un-reduced on each rank, silently.
    """
    has_global_bn = any(isinstance(m, GlobalBatchNorm) for m in module.modules())
    # buffers a module keeps per process (e.g. BYOL-A's Mixup memory) are not broadcast from rank 0
    local = [f"{name}.{buf}" if name else buf for name, m in module.named_modules()
             if getattr(m, "rank_local", False) for buf, _ in m.named_buffers(recurse=False)]
    if local:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, local)
    return DistributedDataParallel(
        module, device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=has_global_bn)
