"""`train.reuse_memory`: with it, glibc serves a large tensor from its heap and keeps the memory
once the tensor is freed; without it, the tensor is a fresh mapping returned to the kernel on free.
Each case runs in its own interpreter (the setting is process-wide)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest


def _has_mallinfo2() -> bool:
    import ctypes

    return platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")


PROBE = """
import ctypes, json, sys
import torch
from polyjepa.allocator import reuse_freed_memory

class MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = reuse_freed_memory() if sys.argv[1] == "on" else False
x = torch.ones(16 * 2**20)  # 64 MiB
during = libc.mallinfo2()
del x
after = libc.mallinfo2()
print(json.dumps({"applied": applied, "mapped_during": during.hblkhd, "mapped_after": after.hblkhd,
                  "free_in_heap_after": after.fordblks}))
"""
MIB = 2**20


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 (mallinfo2) only")
def test_freed_tensors_stay_in_the_heap_only_with_the_setting():
    off, on = _probe("off"), _probe("on")
    # default glibc: the 64 MiB tensor is its own mapping, unmapped when freed
    assert off["mapped_during"] >= 64 * MIB and off["mapped_after"] < 64 * MIB
    assert off["free_in_heap_after"] < 64 * MIB
    # reuse_freed_memory: no mapping; the freed 64 MiB wait in the heap for the next step
    assert on["applied"] is True
    assert on["mapped_during"] < 64 * MIB
    assert on["free_in_heap_after"] >= 64 * MIB


def test_the_trainer_applies_it_on_the_cpu(tmp_path, monkeypatch):
    from _helpers import tiny_recipe, write_recipe

    from polyjepa import train

    calls = []
    monkeypatch.setattr(train, "reuse_freed_memory", lambda: calls.append(1) or True)
    recipe = write_recipe(tiny_recipe(train={"max_steps": 1}), tmp_path)
    train.pretrain(recipe, [], tmp_path / "on")
    train.pretrain(recipe, ["train.reuse_memory=false"], tmp_path / "off")
    assert calls == [1]
