"""Claiming a study name in the Optuna storage, so that two launches never run one study.

:func:`claim_name` creates the study's Optuna study and marks it ``claimed_by`` this process. On
a local SQLite storage both steps run under the file's creation lock, so a second launch sees the
name either free or claimed, never in between. On a storage server (a cluster's PostgreSQL) a study
without an owner is given :data:`CLAIM_GRACE_S` to show one before it counts as left by a launch
killed during its setup, and the claim is read back before the launch goes on.
"""
from __future__ import annotations

import os
import socket
import time

from study.options import StudyError
from study.stores import creation_lock, sqlite_path
from study.terminal import terminal_logger

term = terminal_logger()

CLAIM_ATTR = "claimed_by"
SETUP_DONE_ATTR = "options"  # the last user attr a launch's setup writes: the launch options, as JSON
CLAIM_GRACE_S = 5.0


def claim_name(storage: str, name: str, directions: list[str]) -> None:
    """Create study ``name`` claimed by this process, or raise :class:`StudyError` in one line: the
    name holds a study (resume it), or another live launch is setting it up. A study left by a
    launch killed during its setup is cleared and claimed again."""
    import optuna

    me = f"{socket.gethostname()}:{os.getpid()}"
    with creation_lock(storage):
        rdb = optuna.storages.RDBStorage(storage)
        for _ in range(2):
            try:
                optuna.create_study(study_name=name, storage=rdb, directions=directions).set_user_attr(CLAIM_ATTR, me)
                break
            except optuna.exceptions.DuplicatedStudyError:
                pass
            study = optuna.load_study(study_name=name, storage=rdb)
            if SETUP_DONE_ATTR in study.user_attrs or study.get_trials(deepcopy=False):
                raise StudyError(f"study {name!r} already exists in {storage}; "
                                 f"use --resume {name} or another --study-name")
            owner = str(study.user_attrs.get(CLAIM_ATTR, ""))
            if not owner and sqlite_path(storage) is None:  # a server: its launch may be between the two steps
                owner = _owner_after_grace(name, rdb)
            if owner != me and _alive(owner):
                raise _being_set_up(name, owner)
            term.info(f"{name}: an earlier launch was stopped during setup; starting it over")
            optuna.delete_study(study_name=name, storage=rdb)
        else:
            raise StudyError(f"study {name!r}: another launch keeps claiming this name; choose another --study-name")
        owner = optuna.load_study(study_name=name, storage=rdb).user_attrs.get(CLAIM_ATTR)
    if owner != me:  # a storage server: another launch cleared ours and claimed the name meanwhile
        raise _being_set_up(name, owner)


def _being_set_up(name: str, owner: str) -> StudyError:
    return StudyError(f"study {name!r} is being set up by another launch ({owner}); wait for it and use "
                      f"--resume {name}, or choose another --study-name")


def _owner_after_grace(name: str, rdb) -> str:
    """The claimant of a study that has none yet, re-read for up to CLAIM_GRACE_S ("" if none)."""
    import optuna

    deadline, owner = time.monotonic() + CLAIM_GRACE_S, ""
    while not owner and time.monotonic() < deadline:
        time.sleep(0.25)
        owner = str(optuna.load_study(study_name=name, storage=rdb).user_attrs.get(CLAIM_ATTR, ""))
    return owner


def _alive(owner: str) -> bool:
    """Whether ``host:pid`` is a live process (another host's: assumed alive)."""
    host, _, pid = owner.rpartition(":")
    if not pid.isdigit():
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
