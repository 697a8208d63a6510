"""What ``benchmarks.quality`` runs and keeps: a :class:`Job` (one run: a model, the baseline suite,
or labels-as-clusters) and ``runs.json``, every run's job and result written after each run, so a
killed benchmark loses none, ``--resume`` runs only the rest and ``--tables-from`` re-renders the
tables without training."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from trainables.status import TrialStatus

__all__ = ["Job", "job_key", "load_runs", "provenance", "provenance_rows", "resolved_config", "resume_runs",
           "same_training", "save_runs"]


@dataclass(frozen=True)
class Job:
    """One run (a model, the baseline suite, or labels-as-clusters): what a worker needs, nothing else."""

    kind: str  # "neural" | "suite" | "labels"
    split: str
    seed: int
    config: dict = field(default_factory=dict)
    label: str = ""
    group: str = "main"  # "main" | "ablation" | "speaker"
    frontend: str = ""  # the preset whose cache the job trains on

    def training_config(self) -> dict:
        """The config a neural job's training is given: its own, on its split (the split selects
        SPEAKER_DISJOINT's values there) and with its seed."""
        return {**self.config, "seed": self.seed, "split_scheme": self.split}


def save_runs(results: list[tuple[Job, dict]], out: Path) -> None:
    """Every run so far as ``runs.json`` (after each run: a crash or a kill loses none;
    ``--tables-from`` renders the tables from it)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "runs.json.tmp"
    tmp.write_text(json.dumps(
        [{"label": j.label, "kind": j.kind, "split": j.split, "seed": j.seed, "group": j.group, "config": j.config,
          "frontend": j.frontend, **{k: v for k, v in r.items()}} for j, r in results], indent=1, default=str))
    os.replace(tmp, out / "runs.json")


_RESULT_KEYS = ("status", "reason", "metrics", "val_acc", "time_s", "rows", "resolved", "provenance")


def load_runs(path: Path) -> list[tuple[Job, dict]]:
    """The runs saved by :func:`save_runs`, as (job, result) pairs."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"error: cannot read the saved runs {path}: {e}") from None
    return [(Job(r["kind"], r["split"], r["seed"], r["config"], r["label"], r["group"], r.get("frontend", "")),
             {k: r[k] for k in _RESULT_KEYS if k in r}) for r in saved]


def provenance(repo: Path | None = None) -> dict:
    """What produced the runs of this process, kept with each run in ``runs.json``: the commit of the
    checkout at ``repo`` (this package's by default; "unknown" outside git) and whether its tracked files
    differ from it, the versions of the libraries that shape training, and ``installation``, a short
    hash of every installed distribution with its version. Two measurements of the same job can then be
    told apart by what changed between them: the code, the installation, or neither (then it is noise;
    a run repeats exactly on one installation)."""
    from importlib import metadata

    repo = Path(repo or Path(__file__).resolve().parents[1])

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    installed = sorted({f"{d.metadata['Name']}=={d.version}".lower() for d in metadata.distributions()
                        if d.metadata["Name"]})
    versions = {"python": platform.python_version()}
    for name in ("torch", "numpy", "scikit-learn", "scipy", "pyarrow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "changed_files": None if changed is None else len(changed.splitlines()),
            "installation": hashlib.sha256("\n".join(installed).encode()).hexdigest()[:12],
            "versions": versions}


def provenance_rows(results: list[tuple[Job, dict]]) -> list[dict]:
    """One row per distinct provenance among ``results`` (commit, files changed from it, installation,
    torch) with how many runs it produced, in order of first appearance; runs saved before provenance
    was recorded count as one row of "unrecorded". More than one row: a difference between runs of
    different rows may be the code's or the installation's, not the setting's."""
    rows: dict[str, dict] = {}
    for _, r in results:
        p = r.get("provenance")
        row = ({"commit": "unrecorded", "changed files": "", "installation": "", "torch": ""} if not p else
               {"commit": str(p.get("commit", "unknown"))[:10], "changed files": p.get("changed_files"),
                "installation": p.get("installation", ""), "torch": p.get("versions", {}).get("torch", "")})
        key = json.dumps(row, sort_keys=True, default=str)
        rows.setdefault(key, {**row, "runs": 0})["runs"] += 1
    return list(rows.values())


def job_key(job: Job) -> str:
    return json.dumps([job.kind, job.split, job.seed, job.group, job.label, job.frontend, job.config],
                      sort_keys=True, default=str)


def resolved_config(job: Job) -> dict:
    """The config a neural job trains with as the code resolves it now (its recipe's values included,
    those of its split too; JSON-normalised, as ``runs.json`` keeps it); {} for the other jobs."""
    if job.kind != "neural":
        return {}
    from features.frontend import get_preset
    from trainables.config import resolve_config

    # without the seed: it is in the job's key already, and the saved records never held it (with it,
    # every run saved so far would count as trained with another config)
    unseeded = {k: v for k, v in job.training_config().items() if k != "seed"}
    return _as_saved(resolve_config(unseeded, preset=get_preset(job.frontend)))


def _as_saved(value):
    """``value`` as ``runs.json`` keeps it (JSON-normalised: tuples as lists, other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def same_training(saved: dict, now: dict) -> bool:
    """Whether a run saved with the resolved config ``saved`` trained as ``now`` would: every key it
    recorded has the same value now, and a key it did not record (one added to the code since) is at
    its default now. A key is added with a default that keeps what the code did before (``0 = off``,
    docs/CONFIG.md), so a new knob left off does not make every saved run train again."""
    from trainables.config import DEFAULTS

    added = set(now) - set(saved)
    at_default = all(k in DEFAULTS and now[k] == _as_saved(DEFAULTS[k]) for k in added)
    return set(saved) <= set(now) and all(saved[k] == now[k] for k in saved) and at_default


def resume_runs(jobs: list[Job], path: Path) -> tuple[list[tuple[Job, dict]], list[Job], list[str]]:
    """(the saved results of ``jobs`` that did not fail, the jobs still to run, lines to tell the user).
    A saved run counts only if it is the same job (kind, split, seed, group, label, front end and config)
    and, for a model, trained with the config the job resolves to now (``resolved``, compared by
    :func:`same_training`: a run measured before its recipe changed runs again); a failed one runs
    again. A model's run saved without its resolved config (before it was recorded) is kept, and
    counted in the lines.
    Saved runs not carried over (not planned now, failed, or trained with another resolved config) are
    not lost: the next save rewrites ``runs.json`` without them, so the file as it was is first copied
    beside it (``runs.before-resume-<UTC time>.json``), and a line names the copy."""
    path = Path(path)
    saved = {job_key(j): (j, r) for j, r in load_runs(path)} if path.exists() else {}
    planned = {job_key(j): j for j in jobs}
    kept, unplanned, failed, stale, unchecked = [], 0, 0, 0, 0
    for key, (_, r) in saved.items():
        if key not in planned:
            unplanned += 1
            continue
        if r.get("status") == TrialStatus.FAILED:
            failed += 1
            continue
        job = planned[key]
        if job.kind == "neural" and "resolved" not in r:
            unchecked += 1
        elif job.kind == "neural" and not same_training(r["resolved"], resolved_config(job)):
            stale += 1
            continue
        kept.append((job, r))
    done = {job_key(j) for j, _ in kept}
    lines = [f"{stale} saved run(s) trained with another resolved config (a recipe changed since, or the run's "
             "record predates its split in the resolved config) run again"] if stale else []
    if unchecked:
        lines.append(f"{unchecked} saved run(s) kept without their resolved config (saved before it was recorded): "
                     "they are trusted to match the recipe as it is now")
    if unplanned or failed or stale:
        copy = _copy_aside(path)
        lines.append(f"{unplanned + failed + stale} saved run(s) not carried over ({unplanned} not planned now, "
                     f"{failed} failed, {stale} with another resolved config): {path.name} as it was is kept "
                     f"as {copy}")
    return kept, [j for j in jobs if job_key(j) not in done], lines


def _copy_aside(path: Path) -> Path:
    """A copy of ``path`` beside it, named for the time (never overwriting an earlier copy)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    copy, n = path.with_name(f"runs.before-resume-{stamp}.json"), 1
    while copy.exists():
        n += 1
        copy = path.with_name(f"runs.before-resume-{stamp}-{n}.json")
    shutil.copy2(path, copy)
    return copy
