"""CLI: ``python -m study.launch --space cat_uvac`` (a thin shell over study.engine)."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import errno
import sys
import typing

from study.engine import StudyInterrupted, resume_study, run_study
from study.options import StudyError, StudyOptions
from study.result import format_result, resume_command
from study.tracking import absolute_uri
from study.stores import StoreDamaged, check_store
from study.spaces import SPACES, describe_space, list_spaces
from trainables.config import RECIPES


def did_you_mean(value: str, choices) -> str:
    """" (did you mean cat_uvac?)" for the closest choice, "" when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def check_choice(flag: str, value, choices) -> None:
    """One line for a value that is not one of ``choices``, with the closest one suggested."""
    if value is not None and value not in choices:
        raise StudyError(f"unknown {flag} {value!r}{did_you_mean(value, choices)}; choose one of "
                         f"{', '.join(sorted(choices))}")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a full disk or quota: an OSError with ENOSPC /
    EDQUOT, or SQLite's "database or disk is full" (which reaches us wrapped by SQLAlchemy)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "database or disk is full" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (with the closest option for a misspelt one), not the usage text."""

    def error(self, message):
        if message.startswith("unrecognized arguments: "):
            options = [o for a in self._actions for o in a.option_strings]
            hints = [did_you_mean(arg.split("=")[0], options) for arg in message.split(": ", 1)[1].split()]
            message += "".join(h for h in hints if h)
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# launch's own flags (not study options), each placed in --help after the option it follows
LAUNCH_FLAGS = {
    "space": [(("--list-spaces",), dict(action="store_true", help="list the search spaces and exit")),
              (("--show-space",), dict(metavar="NAME", help="print one search space and exit")),
              (("--resume",), dict(metavar="STUDY", help="continue an interrupted study by name"))],
    "grace_period": [(("--recipe",), dict(metavar="NAME", default=None,
                                          help=f"base training config of every trial: {', '.join(sorted(RECIPES))} "
                                               "(default recommended; paper = the papers' settings)"))],
}


def option_fields() -> list[dataclasses.Field]:
    """The StudyOptions fields with a flag (study.options.option), in --help order."""
    return [f for f in dataclasses.fields(StudyOptions) if "cli" in f.metadata]


def flag_arguments(f: dataclasses.Field, hint) -> tuple[str, dict]:
    """The flag and the add_argument keywords of one option field (its type from ``hint``)."""
    cli = f.metadata["cli"]
    kwargs = {"dest": f.name, "help": cli["help"], **cli["argparse"]}
    kwargs.setdefault("default", None if f.default is dataclasses.MISSING else f.default)
    tp = next((t for t in typing.get_args(hint) if t is not type(None)), hint)  # Optional[X] -> X
    if tp is bool:
        kwargs.setdefault("action", "store_true")
    elif tp in (int, float) and "action" not in kwargs:
        kwargs.setdefault("type", tp)
    return cli["flag"] or "--" + f.name.replace("_", "-"), kwargs


def parser() -> argparse.ArgumentParser:
    """The options' flags (grouped as their fields say), with launch's own (LAUNCH_FLAGS)."""
    p = OneLineParser(prog="python -m study.launch",
                      description="Multi-objective hyperparameter study (Optuna through Ray Tune, tracked in MLflow).")
    hints = typing.get_type_hints(StudyOptions)
    groups = {None: p}
    for f in option_fields():
        group = f.metadata["cli"]["group"]
        if group not in groups:
            groups[group] = p.add_argument_group(group)
        flag, kwargs = flag_arguments(f, hints[f.name])
        groups[group].add_argument(flag, **kwargs)
        for args, extra in LAUNCH_FLAGS.get(f.name, ()):
            groups[group].add_argument(*args, **extra)
    return p


def options_from_args(a: argparse.Namespace) -> StudyOptions:
    """The options the parsed flags give (each field's ``convert`` applied; ``--recipe`` joins the
    overrides); StudyError for a bad ``--set``."""
    values = {}
    for f in option_fields():
        convert = f.metadata["cli"]["convert"]
        values[f.name] = convert(getattr(a, f.name)) if convert else getattr(a, f.name)
    opts = StudyOptions(**values)
    if a.recipe:
        opts.overrides["recipe"] = a.recipe
    return opts


def _resume_line(a: argparse.Namespace, opts) -> str | None:
    """The command that continues this study, None where its name is not known yet."""
    name = a.resume or (opts.study_name if opts else None)
    return resume_command(name, absolute_uri(a.storage)) if name else None


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    opts = None
    try:
        if a.list_spaces:
            print(list_spaces())
            return 0
        if a.show_space:
            check_choice("space", a.show_space, SPACES)
            print(describe_space(a.show_space, epochs=a.epochs, frontends=a.frontends or []))
            return 0
        check_choice("space", a.space, SPACES)
        check_choice("recipe", a.recipe, RECIPES)
        opts = None if a.resume else options_from_args(a)
        check_store(a.storage, "Optuna storage", "--storage")
        if not a.resume:
            check_store(a.tracking_uri, "MLflow store", "--tracking-uri")
        if a.resume:
            result = resume_study(a.resume, a.storage, address=a.address)
        else:
            result = run_study(opts)
    except (StudyError, StoreDamaged) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StudyInterrupted as exc:
        print(f"\ninterrupted; what finished is kept. Continue with: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # a Ctrl-C outside Ray's run (setup, shutdown): the same answer
        again = _resume_line(a, opts)
        print(f"\ninterrupted; what finished is kept.{f' Continue with: {again}' if again else ''}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - only a full disk is answered here; anything else propagates
        if not disk_full(exc):
            raise
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        again = _resume_line(a, opts) or "python -m study.launch --resume <the study name printed above>"
        print(f"error: no space left on the device{where}: what finished is kept in the stores; free space, then "
              f"continue with: {again}", file=sys.stderr)
        return 1
    print(format_result(result))
    if result.failed:
        print(f"error: study {result.study_name}: every trial failed, diverged or has no finite objective "
              f"({', '.join(f'{v} {k}' for k, v in result.counts.items() if v)})", file=sys.stderr)
        return 1
    return 1 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
