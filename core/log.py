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

NAME = "polyjepa"


def quiet_other_ranks(rank: int) -> None:
    """Rank 0 logs warnings and above; the other processes only errors (one message per run,
    not one per process)."""
    logging.getLogger(NAME).setLevel(logging.WARNING if rank == 0 else logging.ERROR)


def show_on_stderr() -> None:
    """Print polyjepa's messages on stderr as `polyjepa: <message>` (once; the command line)."""
    logger = logging.getLogger(NAME)
    if not any(getattr(h, "polyjepa_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("polyjepa: %(message)s"))
        handler.polyjepa_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
