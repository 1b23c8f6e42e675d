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
import warnings

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
    """Print polyjepa's messages on stderr as `polyjepa: <message>` (the command line), with the
    run's account (`RUN`); each warning (logged or `warnings.warn`) once, on one line."""
    run_log().setLevel(logging.INFO)
    _SHOWN.clear()  # a new command (tests call the command line many times in one process)
    logger = logging.getLogger(NAME)
    if not any(getattr(h, "polyjepa_cli", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("polyjepa: %(message)s"))
        handler.addFilter(_Once())
        handler.polyjepa_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    if not _recorded():
        warnings.showwarning = _one_line


def _recorded() -> bool:
    """Whether a caller records warnings (`warnings.catch_warnings(record=True)`, as pytest
    does): it swaps the module's writer for its list's `append`, and replacing `showwarning`
    would bypass it."""
    writer = getattr(warnings, "_showwarnmsg_impl", None)
    return getattr(writer, "__module__", None) != warnings.__name__


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: typing.TextIO | None = None, line: str | None = None) -> None:
    """`warnings.warn` on the command line: `polyjepa: <message>`, one line, no source line."""
    text = f"polyjepa: {message}"
    if text not in _SHOWN:
        _SHOWN.add(text)
        print(text, file=file or sys.stderr)


_SHOWN: set[str] = set()  # warnings already printed by this process


class _Once(logging.Filter):
    """Each warning once per process: the same message again (a split read twice, by
    evaluation and by its report) is dropped; the run's account (INFO) is not filtered."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        if text in _SHOWN:
            return False
        _SHOWN.add(text)
        return True


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
