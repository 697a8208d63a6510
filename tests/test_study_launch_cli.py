"""study.launch's answers to mistyped input: one line, exit 2, the closest name suggested
(nothing starts, nothing is written), the space list in good grammar, and a full disk mid-study
(one line with the command that continues it)."""
from __future__ import annotations

import pytest

from study.launch import main


def _rc(args) -> int:
    """main's exit status, whether it returns it or argparse exits with it."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("args, message", [
    (["--space", "cat_uvca"],
     "error: unknown space 'cat_uvca' (did you mean cat_uvac?); choose one of cat_uvac, gmm, "),
    (["--show-space", "uvca"], "error: unknown space 'uvca' (did you mean uvac?)"),
    (["--recipe", "papr"], "error: unknown recipe 'papr' (did you mean paper?)"),
    (["--spcae", "uvac"], "error: unrecognized arguments: --spcae uvac (did you mean --space?)"),
    (["--epochs", "three"], "error: argument --epochs: invalid int value: 'three'"),
])
def test_a_typo_is_one_line_with_a_suggestion(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = _rc(args)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert "usage:" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written: no database, no run folder


def test_space_list_grammar(capsys):
    assert main(["--list-spaces"]) == 0
    lines = {l.split()[0]: l for l in capsys.readouterr().out.splitlines()}
    assert " 1 parameter " in lines["kmeans"] and "parameters" not in lines["kmeans"]
    assert " 2 parameters " in lines["gmm"]


def _sqlite_full():
    import sqlite3

    try:
        raise sqlite3.OperationalError("database or disk is full")
    except sqlite3.OperationalError as exc:
        raise RuntimeError("(sqlite3.OperationalError) could not write the trial") from exc


@pytest.mark.parametrize("fault", ["oserror", "sqlite"])
def test_a_full_disk_is_one_line_with_the_resume_command(fault, capsys, tmp_path, monkeypatch):
    """A full disk mid-study (a checkpoint, or a store's SQLite file) ends in one line that names
    it and the command that continues the study, exit 1; any other error keeps its traceback."""
    import errno

    import study.launch as launch

    def full(opts):
        if fault == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "ray" / "checkpoint.pt"))
        _sqlite_full()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(launch, "run_study", full)
    assert launch.main(["--space", "kmeans", "--study-name", "s1", "--num-samples", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: no space left on the device")
    assert "python -m study.launch --resume s1" in err
    assert ("checkpoint.pt" in err) == (fault == "oserror")

    def broken(opts):
        raise ValueError("not a disk problem")

    monkeypatch.setattr(launch, "run_study", broken)
    with pytest.raises(ValueError, match="not a disk problem"):
        launch.main(["--space", "kmeans", "--study-name", "s2", "--num-samples", "1"])
