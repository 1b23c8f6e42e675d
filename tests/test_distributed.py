"""DDP with 2 gloo processes on CPU: one step on B per rank equals one step on 2B in one process,
and a 2-process run checkpoints and resumes on 2 processes and on 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import default_collate

from polyjepa.checkpoint import load_file
from polyjepa.distributed import convert_global_batchnorm, wrap_ddp
from polyjepa.encoders import Backbone, TransformerEncoder
from polyjepa.maskers import RandomSubsetMasker
from polyjepa.modalities.tabular import synthetic
from polyjepa.modalities.tabular.tokenizer import FeatureTokenizer
from polyjepa.objectives import BYOL, JEPA, LeJEPA
from polyjepa.predictors import DirectPred, JEPAPredictor, MLPHead
from polyjepa.regularizers import VarianceCovariance
from polyjepa.types import Batch

B = 8  # per-rank batch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(kind: str) -> torch.nn.Module:
    """A small objective, identically initialised in every process."""
    torch.manual_seed(0)
    _, _, meta = synthetic(n=200, seed=0)
    backbone = Backbone(FeatureTokenizer(meta["num_numeric"], meta["cardinalities"], dim=16),
                        TransformerEncoder(16, depth=1, num_heads=2, reg_tokens=1))
    if kind == "jepa":
        return JEPA(backbone, JEPAPredictor(16, dim=16, depth=1, num_heads=2, num_prefix_tokens=1),
                    loss="smooth_l1", regularizers=[VarianceCovariance()])
    if kind == "lejepa":  # SIGReg's characteristic function over the global batch
        return LeJEPA(backbone, MLPHead(16, 32, 8), views=2, num_slices=32)
    if kind == "byol_directpred":  # DirectPred's correlation over the global batch
        return BYOL(backbone, MLPHead(16, 32, 8), DirectPred(8), pooling="mean")
    return BYOL(backbone, MLPHead(16, 32, 8), MLPHead(8, 32, 8), pooling="mean")


def global_batch() -> Batch:
    """The 2B-sample batch (with masks and two noisy views), the same in every process."""
    train, _, meta = synthetic(n=200, seed=0)
    x, y = default_collate([train[i] for i in range(2 * B)])
    g = torch.Generator().manual_seed(1)
    masks = RandomSubsetMasker(meta["num_tokens"])(2 * B, g)
    views = [{"num": x["num"] + 0.1 * torch.randn(x["num"].shape, generator=g), "cat": x["cat"]}
             for _ in range(2)]
    return Batch(x=x, y=y, masks=masks, views=views)


def part(batch: Batch, rank: int) -> Batch:
    s = slice(rank * B, (rank + 1) * B)
    take = lambda d: {k: v[s] for k, v in d.items()}  # noqa: E731
    return Batch(x=take(batch.x), y=batch.y[s],
                 masks=type(batch.masks)(batch.masks.context[s], batch.masks.target[s]),
                 views=[take(v) for v in batch.views])


def one_step(objective: torch.nn.Module, model: torch.nn.Module, batch: Batch) -> None:
    # SGD: the update is linear in the gradient (Adam would turn float noise on ~0 gradients
    # into +-lr steps)
    opt = torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=0.1)
    loss, _ = model(batch)
    loss.backward()
    opt.step()
    objective.update_target(0.9)


def worker(rank: int, world: int, port: int, kind: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    objective = convert_global_batchnorm(build(kind))
    one_step(objective, wrap_ddp(objective, torch.device("cpu")), part(global_batch(), rank))
    torch.save(objective.state_dict(), f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["jepa", "byol", "lejepa", "byol_directpred"])
def test_ddp_step_equals_single_process_step_on_twice_the_batch(kind, tmp_path):
    out = str(tmp_path / "state")
    mp.start_processes(worker, args=(2, free_port(), kind, out), nprocs=2, start_method="spawn")
    single = build(kind)
    one_step(single, single, global_batch())
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    for name, value in single.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        for state in ranks:  # every rank holds the same online and EMA target weights ...
            assert torch.allclose(state[name], value, atol=1e-4, rtol=1e-3), name  # ... as 2B
    changed = [n for n, v in single.state_dict().items() if v.is_floating_point()
               and not torch.equal(v, build(kind).state_dict()[n])]
    moved = "online." if kind == "lejepa" else "target."  # LeJEPA has no target network
    assert any(n.startswith(moved) for n in changed)  # the step really moved it


def torchrun(nproc: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "polyjepa", "pretrain", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_two_process_run_checkpoints_and_resumes_on_two_and_on_one(tmp_path, tiny_recipe):
    recipe = str(tiny_recipe({"train": {"max_steps": 4, "checkpoint_every": 2, "log_every": 1}}))
    run = tmp_path / "run"
    first = torchrun(2, recipe, "--out", str(run), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    state = load_file(run / "checkpoints" / "last.pt")
    assert state["step"] == 4 and len(state["rng"]) == 2  # one RNG state per rank
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 4  # rank 0 alone writes metrics
    again = torchrun(2, recipe, "train.max_steps=6", "--out", str(run), "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert load_file(run / "checkpoints" / "last.pt")["step"] == 6
    from polyjepa.train import pretrain

    pretrain(recipe, ["train.max_steps=8"], run, resume=True)  # one process
    assert load_file(run / "checkpoints" / "last.pt")["step"] == 8
    assert (run / "encoder.pt").exists()


def test_one_failing_rank_stops_the_whole_run(tmp_path, tiny_recipe):
    """Rank 1 raises at step 2 while rank 0 waits in an all-reduce: torchrun ends both (no hang)."""
    recipe = str(tiny_recipe({"train": {"max_steps": 50}}))
    script = Path(__file__).with_name("rank_failure.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), "pretrain", recipe, "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr


class _MixupNet(torch.nn.Module):
    """A linear layer after BYOL-A's Mixup, whose memory is per process (`rank_local`)."""

    def __init__(self) -> None:
        super().__init__()
        from polyjepa.modalities.audio.augment import MixupMemory

        self.mixup = MixupMemory(n_mels=2, num_frames=3, memory_size=4)
        self.linear = torch.nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.mixup(x, torch.Generator().manual_seed(0)).flatten(1)).sum()


def local_buffer_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = _MixupNet()
    model = wrap_ddp(net, torch.device("cpu"))
    for step in range(2):  # each rank pushes its own inputs into its memory
        model(torch.full((2, 1, 2, 3), float(10 * rank + step))).backward()
    torch.save(net.mixup.memory.clone(), f"{out}.{rank}")
    dist.destroy_process_group()


def test_rank_local_buffers_are_not_broadcast(tmp_path):
    out = str(tmp_path / "memory")
    mp.start_processes(local_buffer_worker, args=(2, free_port(), out), nprocs=2,
                       start_method="spawn")
    for rank in range(2):
        memory = torch.load(f"{out}.{rank}", weights_only=True)  # [4, 1, 2, 3]
        expected = torch.tensor([10 * rank, 10 * rank, 10 * rank + 1, 10 * rank + 1.0])
        logged = memory.log().flatten(1).mean(1)  # the memory is kept in the linear domain
        assert torch.allclose(logged, expected), (rank, logged)
