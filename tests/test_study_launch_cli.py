"""study.launch's answers to mistyped input: one line, exit 2, the closest name suggested
(nothing starts, nothing is written), and the space list in good grammar."""
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
    (["--space", "cat_uvca"], "error: unknown space 'cat_uvca' (did you mean cat_uvac?); choose one of cat_uvac, gmm, "),
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
