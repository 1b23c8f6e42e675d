"""CUDA readiness (`pytest -m cuda` on a GPU machine; skipped where there is no CUDA device).

Every demo recipe trains a step on CUDA in fp32 and bf16, with step 1's fp32 loss equal to the
CPU's; the device-side data work (point grouping, log-mel, BYOL-A's chain, LeJEPA's SIGReg)
gives the CPU's numbers; GlobalBatchNorm and SIGReg take the NCCL path in a one-process group;
a run checkpoints and resumes on CUDA. `benchmarks/gpu_check.sh` runs this file and the
benchmark. `POLYJEPA_TEST_DEVICE=cpu pytest -m cuda tests/test_cuda.py` runs the same checks
CPU-against-CPU, to check the tests themselves where there is no GPU.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from _helpers import DEMOS, SHORT_DEMO_RUN, SYNTHETIC_FIT, read_metrics, skip_without_extras

from polyjepa.train import pretrain

DEVICE = os.environ.get("POLYJEPA_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                       reason="no CUDA device (run `pytest -m cuda` on a GPU machine)"),
]
ONE_STEP = [*SHORT_DEMO_RUN, "train.max_steps=1", "train.monitor_every=1000",
            "optim.warmup_steps=0"]


@pytest.fixture(autouse=True)
def exact_fp32():
    """No TF32 in fp32 matmuls and convolutions: the CPU comparison needs true fp32."""
    if not torch.cuda.is_available():
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _first_loss(name: str, device: str, precision: str, out) -> float:
    run = pretrain(name, [*ONE_STEP, *SYNTHETIC_FIT.get(name, []), f"train.device={device}",
                          f"train.precision={precision}"], out)
    return next(r["loss"] for r in read_metrics(run) if "loss" in r)


@pytest.mark.parametrize("name", DEMOS)
def test_a_demo_step_on_the_device_matches_the_cpu(name, tmp_path):
    skip_without_extras(name)
    cpu = _first_loss(name, "cpu", "fp32", tmp_path / "cpu")
    fp32 = _first_loss(name, DEVICE, "fp32", tmp_path / "fp32")
    bf16 = _first_loss(name, DEVICE, "bf16", tmp_path / "bf16")
    assert fp32 == pytest.approx(cpu, rel=2e-3, abs=1e-4)
    assert math.isfinite(bf16) and bf16 == pytest.approx(cpu, rel=0.1, abs=0.05)


def test_point_grouping_on_the_device_matches_the_cpu():
    from polyjepa.modalities.pointcloud.ops import farthest_point_sample, knn, proximity_order

    g = torch.Generator().manual_seed(0)
    points = torch.randn(4, 2048, 3, generator=g)
    fps = farthest_point_sample(points, 64)
    assert torch.equal(farthest_point_sample(points.to(DEVICE), 64).cpu(), fps)
    centers = torch.gather(points, 1, fps[..., None].expand(-1, -1, 3))
    near = knn(centers, points, 32)
    assert torch.equal(knn(centers.to(DEVICE), points.to(DEVICE), 32).cpu(), near)
    assert torch.equal(proximity_order(centers.to(DEVICE)).cpu(), proximity_order(centers))


def test_logmel_on_the_device_matches_the_cpu():
    pytest.importorskip("librosa")
    from polyjepa.modalities.audio.frontend import LogMel

    frontend = LogMel(16000, n_mels=64, n_fft=1024, hop_length=160)
    wave = torch.randn(3, 16000, generator=torch.Generator().manual_seed(0))
    expected = frontend(wave)
    got = frontend.to(DEVICE)(wave.to(DEVICE)).cpu()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_byol_a_chain_on_the_device_matches_the_cpu():
    from polyjepa.modalities.audio.augment import (
        BatchNormalize,
        MixupMemory,
        RandomLinearFader,
        RandomResizeCrop,
    )

    x = torch.randn(8, 1, 64, 96, generator=torch.Generator().manual_seed(0))
    outputs = []
    for device in ("cpu", DEVICE):
        chain = [MixupMemory(n_mels=64, num_frames=96, memory_size=16), RandomResizeCrop(),
                 RandomLinearFader(), BatchNormalize()]
        g = torch.Generator().manual_seed(1)
        y = x.to(device)
        for _ in range(2):  # the second batch mixes with the first from the memory
            out = y
            for augment in chain:
                out = augment.to(device)(out, g)
        outputs.append(out.cpu())
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)


def test_sigreg_on_the_device_matches_the_cpu():
    from polyjepa.regularizers import SIGReg

    z = torch.randn(256, 64, generator=torch.Generator().manual_seed(0)) * 1.5
    reg = SIGReg(weight=1.0, num_slices=256)
    reg.set_step(3)
    expected = reg.statistic(z)
    assert torch.allclose(reg.statistic(z.to(DEVICE)).cpu(), expected, rtol=1e-4)


def test_global_batchnorm_and_sigreg_take_the_nccl_path_in_one_process(tmp_path):
    import torch.distributed as dist

    from polyjepa.distributed import GlobalBatchNorm
    from polyjepa.regularizers import SIGReg

    backend = "nccl" if DEVICE == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)).to(DEVICE)
        plain, global_bn = torch.nn.BatchNorm1d(8).to(DEVICE), GlobalBatchNorm(8).to(DEVICE)
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        plain(a).square().sum().backward()
        global_bn(b).square().sum().backward()
        assert torch.allclose(a.grad, b.grad, atol=1e-5)
        assert torch.allclose(plain.running_var, global_bn.running_var, atol=1e-6)
        reg = SIGReg(weight=1.0, num_slices=64)
        reg.set_step(1)
        assert torch.isfinite(reg.statistic(x))
    finally:
        dist.destroy_process_group()


class Crash(Exception):
    """A run dying between checkpoints."""


def test_a_run_checkpoints_and_resumes_on_the_device(tmp_path, monkeypatch):
    from polyjepa.objectives import JEPA

    common = ["synthetic=true", "train.progress=false", f"train.device={DEVICE}",
              "train.log_every=1", "train.checkpoint_every=2", "train.probe_every=null",
              "train.keep_checkpoints=[]", "optim.warmup_steps=0", "train.max_steps=4"]
    straight = pretrain("t_jepa_demo", common, tmp_path / "straight")
    forward, calls = JEPA.forward, [0]

    def crashing(self, batch):
        calls[0] += 1
        if calls[0] == 3:  # after the checkpoint of step 2
            raise Crash
        return forward(self, batch)

    monkeypatch.setattr(JEPA, "forward", crashing)
    with pytest.raises(Crash):
        pretrain("t_jepa_demo", common, tmp_path / "resumed")
    monkeypatch.setattr(JEPA, "forward", forward)
    resumed = pretrain("t_jepa_demo", common, tmp_path / "resumed", resume=True)
    a = [r["loss"] for r in read_metrics(straight) if "loss" in r]
    b = [r["loss"] for r in read_metrics(resumed) if "loss" in r]
    assert a == pytest.approx(b, rel=1e-5)
