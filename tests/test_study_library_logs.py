"""study.library_logs: the libraries' lines go to the study's log file while a study runs,
and the loggers are as they were afterwards (Optuna through its public switches only)."""
from __future__ import annotations

import io
import logging

import optuna

from study.library_logs import library_logs_to


def test_optuna_lines_go_to_the_file_and_come_back_after(tmp_path):
    optuna.logging.enable_default_handler()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    root = logging.getLogger("optuna")
    before = list(root.handlers)
    default = next(h for h in before if isinstance(h, logging.StreamHandler))  # Optuna's own (stderr)
    terminal = io.StringIO()
    old = default.setStream(terminal)
    try:
        log = tmp_path / "study.log"
        with library_logs_to(log):
            optuna.logging.get_logger("optuna.check").warning("inside the study")
            logging.getLogger("mlflow.check").warning("mlflow inside")
        assert "optuna.check: inside the study" in log.read_text() and "mlflow inside" in log.read_text()
        assert "inside the study" not in terminal.getvalue()
        assert root.handlers == before  # Optuna's default handler is back, nothing added twice
        optuna.logging.get_logger("optuna.check").warning("after the study")
        assert "after the study" in terminal.getvalue() and "after the study" not in log.read_text()
    finally:
        default.setStream(old)


def test_the_studys_own_lines_stay_on_the_terminal(tmp_path, capsys):
    """study.terminal: ``[study] ...`` on stdout (or a given stream), one handler however often
    it is set up, out of the library log file; the libraries' and the study modules' loggers untouched."""
    import importlib

    import study.terminal

    libraries = {name: list(logging.getLogger(name).handlers) for name in ("ray", "optuna", "mlflow", "study")}
    term = study.terminal.terminal_logger()
    importlib.reload(study.terminal)
    ours = [h for h in study.terminal.terminal_logger().handlers if h.get_name() == study.terminal.NAME]
    assert len(ours) == 1 and not term.propagate  # (pytest adds its capture to loggers that do not propagate)
    assert {name: list(logging.getLogger(name).handlers) for name in libraries} == libraries
    assert logging.getLogger("study.engine").propagate and not logging.getLogger("study.engine").handlers
    log = tmp_path / "study.log"
    with library_logs_to(log):
        term.info("sampler seed 7")
        stream = io.StringIO()
        term.info("a\n    b", extra={"stream": stream})
    assert capsys.readouterr().out == "[study] sampler seed 7\n" and stream.getvalue() == "[study] a\n    b\n"
    assert "sampler seed" not in log.read_text()


def test_counts_in_terminal_lines_agree_in_number():
    from study.terminal import count_of
    assert [count_of(1, "trial"), count_of(2, "trial"), count_of(0, "epoch")] == ["1 trial", "2 trials", "0 epochs"]
