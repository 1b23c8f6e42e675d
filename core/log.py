"""Where polyjepa's operational messages go.

Skipped files and steps, collapse warnings, resampling counts and the like are logged to the
logger `"polyjepa"` and its children (each module logs to `logging.getLogger(__name__)`, e.g.
`polyjepa.train`, `polyjepa.modalities.audio.readers`); `warnings.warn` stays for misuse of the
API or of a recipe's keys (a capped batch size, a data setting reset). An application configures
them as any other library's: without configuration Python prints WARNING and above to stderr.
The command line prefixes them with "polyjepa: " (`show_on_stderr`); a distributed run shows
errors only on processes other than rank 0 (`quiet_other_ranks`).
"""

from __future__ import annotations

import logging
import sys
import typing

NAME = "polyjepa"
RUN = f"{NAME}.run"
"""A run's own account at INFO level: the data and length it resolved at its start, which
encoder it kept at its end. The command line shows it; a library user sees it by setting this
logger to INFO."""


def run_log() -> logging.Logger:
    """The logger of a run's account (`RUN`)."""
    return logging.getLogger(RUN)


def quiet_other_ranks(rank: int) -> None:
    """Rank 0 logs warnings and above (and the run's account where it is shown); the other
    processes only errors (one message per run, not one per process)."""
    logging.getLogger(NAME).setLevel(logging.WARNING if rank == 0 else logging.ERROR)
    if rank != 0:
        run_log().setLevel(logging.ERROR)


def show_on_stderr() -> None:
    """Print polyjepa's messages on stderr as `polyjepa: <message>` (once; the command line),
    with the run's account (`RUN`)."""
    run_log().setLevel(logging.INFO)
    logger = logging.getLogger(NAME)
    if not any(getattr(h, "polyjepa_cli", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("polyjepa: %(message)s"))
        handler.polyjepa_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a message comes (not the stream it was made
    with), so that a process that replaces stderr (a test's capture) never writes to a closed
    one."""

    @property  # type: ignore[override]
    def stream(self) -> typing.TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: typing.TextIO) -> None:
        pass
