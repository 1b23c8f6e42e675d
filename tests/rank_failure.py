"""Run `polyjepa pretrain` with rank 1 raising at its 2nd step (used by test_distributed.py)."""

import os
import sys

from polyjepa import train
from polyjepa.cli import main

original = train.Trainer._train_step


def failing_step(self, batches):
    if os.environ.get("RANK") == "1" and self.step == 1:
        raise RuntimeError("injected failure on rank 1")
    return original(self, batches)


train.Trainer._train_step = failing_step
sys.exit(main(sys.argv[1:]))
