"""Operational messages go to the `polyjepa` logger: printed by the command line with a prefix,
once however often it is set up, and only errors on processes other than rank 0."""

from __future__ import annotations

import logging
import subprocess
import sys

from polyjepa.log import NAME, quiet_other_ranks

SNIPPET = ("import logging; from polyjepa.log import show_on_stderr; show_on_stderr(); "
           "show_on_stderr(); logging.getLogger('polyjepa.modalities.audio.readers')"
           ".warning('data: skipped %d unreadable audio files', 2); "
           "logging.getLogger('polyjepa.train').info('not shown')")


def test_the_command_line_prints_each_message_once_with_a_prefix():
    proc = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "polyjepa: data: skipped 2 unreadable audio files\n"


def test_only_rank_zero_shows_warnings():
    logger = logging.getLogger(NAME)
    level = logger.level
    try:
        quiet_other_ranks(1)
        child = logging.getLogger(f"{NAME}.train")
        assert not child.isEnabledFor(logging.WARNING) and child.isEnabledFor(logging.ERROR)
        quiet_other_ranks(0)
        assert child.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(level)


REPEATS = ("import logging, warnings; from polyjepa.log import show_on_stderr; show_on_stderr(); "
           "log = logging.getLogger('polyjepa.targets')\n"
           "for _ in range(3):\n"
           "    log.warning('x.csv: read as a regression target')\n"
           "    warnings.warn('train.batch_size=256 is larger than the 14 training samples')\n"
           "log.warning('another message')\n")


def test_each_warning_is_one_line_once_per_command():
    """A warning logged again (a split read twice, by evaluation and by its report) or raised
    again by `warnings.warn` prints once, on one line, with no source line."""
    proc = subprocess.run([sys.executable, "-W", "always", "-c", REPEATS], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "polyjepa: x.csv: read as a regression target",
        "polyjepa: train.batch_size=256 is larger than the 14 training samples",
        "polyjepa: another message"]
