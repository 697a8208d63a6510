"""The study's own lines on the terminal (``[study] ...``): the ``study.terminal`` logger.

Its one handler (:class:`TerminalHandler`, added once however often :func:`terminal_logger` is
called) writes ``[study] <message>`` to the record's ``stream`` (``extra={"stream": ...}``;
default: ``sys.stdout`` at the time of the line, so a redirected or captured stdout sees it),
above a progress bar when one is drawn (``tqdm.write``), and flushes. A write error is the
caller's, as it was with ``print``. The logger does not propagate: its lines reach neither the
root logger's handlers nor the study's log file (study.library_logs), and the loggers of the
study's modules (``study.engine``, ...) are not its children: their warnings go where they went.
"""
from __future__ import annotations

import logging
import sys

from tqdm import tqdm

NAME = "study.terminal"
PREFIX = "[study] "


class TerminalHandler(logging.Handler):
    """``[study] <message>`` on the record's stream (default: stdout), above any tqdm bar."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = getattr(record, "stream", None) or sys.stdout
        tqdm.write(self.format(record), file=stream)
        stream.flush()


def terminal_logger() -> logging.Logger:
    """The ``study.terminal`` logger, its handler added the first time only."""
    logger = logging.getLogger(NAME)
    if not any(h.get_name() == NAME for h in logger.handlers):
        handler = TerminalHandler()
        handler.set_name(NAME)
        handler.setFormatter(logging.Formatter(PREFIX + "%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def count_of(n: int, noun: str) -> str:
    """``1 trial``, ``2 trials``: a count in a terminal line."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
