"""CLI: ``python -m study.launch --space cat_uvac`` (a thin shell over study.engine)."""
from __future__ import annotations

import argparse
import difflib
import sys

from study.engine import StudyInterrupted, resume_study, run_study
from study.options import StudyError, StudyOptions
from study.result import format_result, resume_command
from study.tracking import absolute_uri
from study.stores import StoreDamaged, check_store
from study.spaces import SPACES, describe_space, list_spaces
from trainables.config import RECIPES


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def did_you_mean(value: str, choices) -> str:
    """" (did you mean cat_uvac?)" for the closest choice, "" when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def check_choice(flag: str, value, choices) -> None:
    """One line for a value that is not one of ``choices``, with the closest one suggested."""
    if value is not None and value not in choices:
        raise StudyError(f"unknown {flag} {value!r}{did_you_mean(value, choices)}; choose one of "
                         f"{', '.join(sorted(choices))}")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (with the closest option for a misspelt one), not the usage text."""

    def error(self, message):
        if message.startswith("unrecognized arguments: "):
            options = [o for a in self._actions for o in a.option_strings]
            hints = [did_you_mean(arg.split("=")[0], options) for arg in message.split(": ", 1)[1].split()]
            message += "".join(h for h in hints if h)
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    d = StudyOptions()
    p = OneLineParser(prog="python -m study.launch",
                      description="Multi-objective hyperparameter study (Optuna through Ray Tune, tracked in MLflow).")
    p.add_argument("--space", metavar="NAME", default=None,
                   help=f"search space: {', '.join(sorted(SPACES))} (default cat_uvac)")
    p.add_argument("--list-spaces", action="store_true", help="list the search spaces and exit")
    p.add_argument("--show-space", metavar="NAME", help="print one search space and exit")
    p.add_argument("--resume", metavar="STUDY", help="continue an interrupted study by name")
    g = p.add_argument_group("data")
    g.add_argument("--features", metavar="DIR", help="an existing feature cache directory")
    g.add_argument("--dataset", default=d.dataset, help="dataset to build features for (default synthetic)")
    g.add_argument("--root", metavar="DIR", help="the dataset's root directory")
    g.add_argument("--features-root", default=d.features_root, help="where built caches go (default runs/features)")
    g.add_argument("--frontends", metavar="PRESET[,PRESET...]",
                   help="front ends to train on (features presets; several: searched as the config key "
                        "'frontend', each cache built from the same clips). Default: the cache's (--features) "
                        "or the dataset's default front end")
    g.add_argument("--n-clusters", type=int, default=0, help="clusters (default: the number of classes)")
    g = p.add_argument_group("search")
    g.add_argument("--objective", action="append", metavar="METRIC[:max|min]",
                   help="repeatable; default val/silhouette_z:max and val/acc:max (baselines: val/silhouette_x); "
                        "a name the space's model does not report is refused before the study starts (exit 2)")
    g.add_argument("--num-samples", type=int, default=d.num_samples, help=f"trials (default {d.num_samples})")
    g.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs per trial (default {d.epochs})")
    g.add_argument("--smoke-test", action="store_true", help="tiny: 2 trials x 1 epoch")
    g.add_argument("--scheduler", metavar="fifo|asha|moasha", default=None,
                   help="early stopping: fifo (none), asha (ASHA on --asha-metric, or on the only objective), "
                        "moasha (multi-objective ASHA: non-dominated sorting over every objective at each rung). "
                        "Default: asha with --asha-metric, moasha for 2+ objectives and 5+ trials, asha for one "
                        "objective, else fifo. Printed and recorded (Optuna user attr 'scheduler', MLflow param)")
    g.add_argument("--asha-metric", metavar="METRIC:max|min", help="stop bad trials early with ASHA on one metric")
    g.add_argument("--grace-period", type=int, default=d.grace_period,
                   help="epochs before the first rung of asha/moasha")
    g.add_argument("--recipe", metavar="NAME", default=None,
                   help=f"base training config of every trial: {', '.join(sorted(RECIPES))} (default recommended; "
                        "paper = the papers' settings)")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="sampler seed (default: a fresh one per study, printed and recorded in the Optuna "
                        "study's user attrs and the MLflow parent run; --resume keeps it)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="training config for every trial (repeatable), e.g. --set channels=8,16,32,64. "
                        "A key the space searches (e.g. --set divergence=euc) is pinned: taken out of the "
                        "search, the value used by every trial, and recorded (printed; Optuna user attr "
                        "'pinned'; MLflow parent param/tag study.pinned). Keys and values are checked with "
                        "the training config before any trial: an unknown key or a bad value is an error "
                        "(exit 2); a key the space fixes (model) cannot be set")
    g = p.add_argument_group("execution")
    g.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial)
    g.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial, help="fractional allowed")
    g.add_argument("--max-concurrent", type=int, default=d.max_concurrent)
    g.add_argument("--max-failures", type=int, default=d.max_failures, help="retries of a trial whose worker died")
    g.add_argument("--address", help="an existing Ray cluster (e.g. auto)")
    g.add_argument("--storage-path", default=d.storage_path, help="Ray's trial storage (default runs/ray)")
    g = p.add_argument_group("tracking")
    g.add_argument("--storage", default=d.storage, help="Optuna storage URL (default sqlite:///optuna.db)")
    g.add_argument("--study-name", help="default: SPACE-DATASET-TIMESTAMP")
    g.add_argument("--tracking-uri", default=d.tracking_uri, help="MLflow tracking URI (default sqlite:///mlflow.db)")
    g.add_argument("--experiment", default=d.experiment, help="MLflow experiment (default vac-study)")
    return p


def options_from_args(a: argparse.Namespace) -> StudyOptions:
    overrides = {}
    for item in a.set:
        if "=" not in item:
            raise StudyError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k.strip()] = _value(v.strip())
    if a.recipe:
        overrides["recipe"] = a.recipe
    return StudyOptions(
        space=a.space or "cat_uvac", features=a.features, dataset=a.dataset, root=a.root,
        features_root=a.features_root, objectives=a.objective,
        frontends=[f for f in (a.frontends or "").replace(" ", "").split(",") if f] or None,
        num_samples=a.num_samples, epochs=a.epochs, max_concurrent=a.max_concurrent,
        cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial, asha_metric=a.asha_metric,
        scheduler=a.scheduler,
        grace_period=a.grace_period, n_clusters=a.n_clusters, storage=a.storage, study_name=a.study_name,
        tracking_uri=a.tracking_uri, experiment=a.experiment, storage_path=a.storage_path,
        address=a.address, seed=a.seed, max_failures=a.max_failures, overrides=overrides,
        smoke_test=a.smoke_test)


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        if a.list_spaces:
            print(list_spaces())
            return 0
        if a.show_space:
            check_choice("space", a.show_space, SPACES)
            frontends = [f for f in (a.frontends or "").replace(" ", "").split(",") if f]
            print(describe_space(a.show_space, epochs=a.epochs, frontends=frontends))
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
        name = a.resume or (opts.study_name if opts else None)
        again = f" Continue with: {resume_command(name, absolute_uri(a.storage))}" if name else ""
        print(f"\ninterrupted; what finished is kept.{again}", file=sys.stderr)
        return 130
    print(format_result(result))
    if result.failed:
        print(f"error: study {result.study_name}: every trial failed, diverged or has no finite objective "
              f"({', '.join(f'{v} {k}' for k, v in result.counts.items() if v)})", file=sys.stderr)
        return 1
    return 1 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
