"""Ctrl-C during a study: the first one stops it cleanly (exit 1), a second one ends it (130).

Ray Tune catches the first SIGINT during ``Tuner.fit`` (it stops the trials and saves the
experiment) and then puts back the handler that was there before. :class:`CtrlC` is that
handler: it counts what reaches it and raises ``KeyboardInterrupt`` as Python's default does,
so that a second Ctrl-C is seen wherever it lands (inside ``fit``, in a library that swallows
the exception, while the result is collected), and :func:`deferred` keeps one from cutting
``ray.shutdown`` short (which would leave Ray's processes behind): it is raised after it.
"""
from __future__ import annotations

import contextlib
import signal
import threading


class CtrlC:
    """SIGINTs seen by the study's own handler (installed for the ``with`` block)."""

    def __init__(self):
        self.count = 0
        self._old = None

    def _handler(self, signum, frame):
        self.count += 1
        raise KeyboardInterrupt

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@contextlib.contextmanager
def deferred():
    """Run the block with SIGINT held back; one that came is raised (KeyboardInterrupt) after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if seen:
        raise KeyboardInterrupt
