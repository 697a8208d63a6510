"""The study's two SQLite stores (Optuna's ``optuna.db``, MLflow's ``mlflow.db``) checked before
use: a damaged file is one line naming it, not a page of SQLAlchemy traceback.

:func:`check_store` reads a local SQLite store's header and runs SQLite's ``quick_check`` (a
few milliseconds on a study's database); a file that is missing is fine (it is created), any
other URL (PostgreSQL, an MLflow server) is left to its client.

:func:`creation_lock` serialises the first creation of a local SQLite store's tables between
processes: MLflow and Optuna both build a fresh file's schema by a chain of alembic migrations,
and two processes running them on one file at once both fail ("table _alembic_tmp_latest_metrics
already exists", "expected to match one row when updating ... in 'alembic_version'").
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no lock; one launch at a time on a fresh store
    fcntl = None


class StoreDamaged(ValueError):
    """A store that cannot be read as a database; the message names it and what to do."""


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///...`` URL, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def check_store(uri: str, what: str, flag: str) -> None:
    """Raise :class:`StoreDamaged` when ``uri`` is a local SQLite file that is not a sound database."""
    path = sqlite_path(uri)
    if path is None or not path.exists() or path.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("PRAGMA quick_check(1)").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        rows = [(str(exc),)]
    if rows != [("ok",)]:
        detail = " ".join(str(rows[0][0]).replace("*** in database main ***", "").split())
        raise StoreDamaged(f"the {what} {path} is damaged ({detail}): restore it from a backup, or move it "
                           f"aside and point {flag} at another file")


@contextlib.contextmanager
def creation_lock(uri: str):
    """Hold an exclusive lock on a local SQLite store's file (created empty if missing) while the
    block runs; other processes entering it for the same file wait. SQLite's own locks are POSIX
    record locks, independent of this ``flock``, so the database itself is not affected. Any other
    URL, or a folder that does not exist (the client says so), runs the block without a lock."""
    path = sqlite_path(uri)
    if path is None or fcntl is None or not path.parent.is_dir():
        yield
        return
    with open(path, "ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
