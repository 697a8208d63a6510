"""What every command-line entry point shares: a reader that goes away is not an error.

``python -m features.build ... | head -1`` closes the pipe after one line; the next write (or
the interpreter's final flush) raises ``BrokenPipeError``. :func:`run_main` turns that into a
quiet exit with status 141 (128 + SIGPIPE, what a shell reports for a command killed by a
closed pipe) instead of a traceback; the work itself (a built cache, a trained run) is done
and kept either way.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Optional

EXIT_BROKEN_PIPE = 141


def run_main(main: Callable[[Optional[list]], int], argv: Optional[list] = None) -> int:
    """``main(argv)``'s exit status; 141, silently, when stdout's reader has gone away."""
    try:
        status = main(argv)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
