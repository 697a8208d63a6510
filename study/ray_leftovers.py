"""What a killed driver left of the local Ray it started, found and stopped (Linux ``/proc``).

A driver SIGKILLed takes Ray's GCS and raylet with it (Ray's fate sharing), but Ray's dashboard
and runtime-env agents, orphaned, keep running and ignore SIGTERM. So a study that starts a
local Ray records it (:func:`record_session`, ``ray-session.json`` in the study's folder): the
host, the user, the driver's PID and start time, and Ray's session directory. The next
``--resume`` (or launch) of that study calls :func:`stop_leftovers`: when the recorded driver is
dead, every process of this user started after it whose command line or open files are inside
that session directory is stopped (SIGTERM, then SIGKILL after a short wait), in one line.

Never touched: a Ray whose driver is alive (also a PID reused by another process: the start
time differs), another host's or another user's processes, processes of another session (the
session directory, ``.../session_<date>_<pid>``, is unique), a record that is not one.
A clean ``ray.shutdown`` removes the record (:func:`forget_session`).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Optional

RECORD = "ray-session.json"


def _stat(pid: int) -> Optional[tuple[str, int]]:
    """(state, start time in clock ticks since boot) of a process, None when there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def _alive(pid: int, start: int) -> bool:
    """The process ``pid`` that started at ``start`` still runs (not a zombie, not a reused PID)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == start


def record_session(path: Path, session_dir: str) -> None:
    """Write (atomically) that this process started the local Ray of ``session_dir``."""
    st = _stat(os.getpid())
    record = {"host": socket.gethostname(), "uid": os.getuid(), "driver_pid": os.getpid(),
              "driver_start": st[1] if st else None, "session_dir": str(session_dir)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, path)


def forget_session(path: Path) -> None:
    """Remove the record of a Ray this process stopped itself."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _read(path: Path) -> Optional[dict]:
    """The record when it is a usable one of this host and user, else None."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        session, pid, start = str(rec["session_dir"]), int(rec["driver_pid"]), int(rec["driver_start"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if rec.get("host") != socket.gethostname() or rec.get("uid") != os.getuid():
        return None
    if not os.path.isabs(session) or not Path(session).name.startswith("session_"):
        return None
    return {"session_dir": session.rstrip("/"), "driver_pid": pid, "driver_start": start}


def _uses(pid: int, session_dir: str) -> bool:
    """The process names the session directory on its command line or holds a file inside it."""
    proc = Path(f"/proc/{pid}")
    try:
        if session_dir.encode() in (proc / "cmdline").read_bytes():
            return True
        for fd in os.listdir(proc / "fd"):
            if os.readlink(proc / "fd" / fd).startswith(session_dir + "/"):
                return True
    except OSError:
        pass
    return False


def session_processes(session_dir: str, after: int = 0) -> list[int]:
    """This user's live processes of the Ray session ``session_dir`` started at or after ``after``."""
    me, found = os.getuid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        pid = int(name)
        try:
            if os.stat(f"/proc/{pid}").st_uid != me:
                continue
        except OSError:
            continue
        st = _stat(pid)
        if st and st[0] not in ("Z", "X") and st[1] >= after and _uses(pid, session_dir):
            found.append(pid)
    return sorted(found)


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _stop(pids: list[int], starts: dict[int, int], wait_s: float) -> None:
    """SIGTERM, then SIGKILL what is still there after ``wait_s``; only the processes we looked at."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if _alive(pid, starts[pid]):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(_alive(p, starts[p]) for p in pids):
            time.sleep(0.1)


def stop_leftovers(path: Path, wait_s: float = 3.0) -> Optional[str]:
    """Stop what a dead driver left of the Ray recorded at ``path``; the line saying what was
    stopped, None when nothing was (no record, the driver alive, nothing left)."""
    rec = _read(path) if os.path.isdir("/proc") else None
    if rec is None or _alive(rec["driver_pid"], rec["driver_start"]):
        return None
    pids = session_processes(rec["session_dir"], after=rec["driver_start"])
    starts = {p: s[1] for p in pids if (s := _stat(p))}
    pids = [p for p in pids if p in starts]
    names = [f"{_name(p)} {p}" for p in pids]
    if pids:
        _stop(pids, starts, wait_s)
    forget_session(path)
    if not pids:
        return None
    left = [p for p in pids if _alive(p, starts[p])]
    tail = f"; still running: {', '.join(map(str, left))}" if left else ""
    return (f"stopped {len(pids)} Ray process(es) left by the dead driver (PID {rec['driver_pid']}) of "
            f"{rec['session_dir']}: {', '.join(names)}{tail}")
