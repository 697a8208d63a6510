"""What a study is asked to do: :class:`StudyOptions` (checked before any file, run or trial),
and the trial config and search space they imply.

Each field with a command-line flag declares it (:func:`option`: help, group, flag, type);
``study.launch`` builds its parser and the conversion from them. ``StudyOptions.resolve`` fills
in what was left to the study (the smoke test's sizes, the front ends, the default objectives,
the scheduler); ``StudyOptions.validate`` checks, changing nothing: names against what the
trainer declares (objectives, the ASHA metric), ``--set`` values against the config schema and
the space. :func:`fixed_config` is the config every trial starts from; :func:`study_space` is
the define-by-run space with the ``--set`` keys pinned (:class:`PinnedSpace`).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from study.objectives import default_objectives, model_metrics, parse_objective, parse_objectives
from study.spaces import SPACES, RecordingTrial, get_space, record_space
from trainables.config import DEFAULTS

log = logging.getLogger(__name__)


class StudyError(Exception):
    """A problem with the study's input, reported as one line."""


SMOKE_TEST = (2, 1)  # --smoke-test: trials, epochs


def option(default=None, help: Optional[str] = None, *, group: Optional[str] = None, flag: Optional[str] = None,
           factory=None, convert=None, **argparse_kwargs):
    """A :class:`StudyOptions` field and its ``study.launch`` flag, declared once: ``help``
    (``%(default)s`` is the default), the --help ``group`` (None: the top), ``flag`` (default
    ``--<name with dashes>``), ``convert`` (the parsed value -> the field's, may raise
    StudyError) and argparse's own keywords (``metavar``, ``action``, ``type``; the type is the
    annotation's, a bool is a switch). study.launch builds its parser from these fields."""
    cli = {"group": group, "flag": flag, "help": help, "convert": convert, "argparse": argparse_kwargs}
    if factory is not None:
        return field(default_factory=factory, metadata={"cli": cli})
    return field(default=default, metadata={"cli": cli})


def names(text: str) -> Optional[list]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None when it names none."""
    return [f for f in text.replace(" ", "").split(",") if f] or None


def config_value(text: str):
    """A ``--set`` value: int, float, true/false, else the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_set(items) -> dict:
    """``--set KEY=VALUE`` items -> the overrides dict."""
    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise StudyError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k.strip()] = config_value(v.strip())
    return overrides


@dataclass
class StudyOptions:
    """What a study is asked to do; each field with a flag is an option of ``study.launch``
    (:func:`option`), in the order of its --help."""

    space: str = option("cat_uvac", f"search space: {', '.join(sorted(SPACES))} (default %(default)s)",
                        metavar="NAME")
    features: Optional[str] = option(None, "an existing feature cache directory", group="data", metavar="DIR")
    # the dataset is built under features_root when no --features is given
    dataset: str = option("synthetic", "dataset to build features for (default %(default)s)", group="data")
    root: Optional[str] = option(None, "the dataset's root directory", group="data", metavar="DIR")
    features_root: str = option("runs/features", "where built caches go (default %(default)s)", group="data")
    frontends: Optional[list] = option(   # None: the cache's (--features) or the dataset's default front end
        None, "front ends to train on (features presets; several: searched as the config key 'frontend', each "
              "cache built from the same clips). Default: the cache's (--features) or the dataset's default front end",
        group="data", metavar="PRESET[,PRESET...]", type=names)
    n_clusters: int = option(0, "clusters (default: the number of classes)", group="data")
    objectives: Optional[list] = option(  # None: study.objectives.default_objectives(space)
        None, "repeatable; default val/silhouette_z:max and val/acc:max (baselines: val/silhouette_x); a name the "
              "space's model does not report is refused before the study starts (exit 2)",
        group="search", flag="--objective", action="append", metavar="METRIC[:max|min]")
    num_samples: int = option(10, "trials (default %(default)s)", group="search")
    epochs: int = option(6, "epochs per trial (default %(default)s)", group="search")
    smoke_test: bool = option(False, "tiny: {} trials x {} epoch".format(*SMOKE_TEST), group="search")
    scheduler: Optional[str] = option(  # None: study.schedulers.choose_scheduler, at resolve
        None, "early stopping: fifo (none), asha (ASHA on --asha-metric, or on the only objective), moasha "
              "(multi-objective ASHA: non-dominated sorting over every objective at each rung). Default: asha with "
              "--asha-metric, moasha for 2+ objectives and 5+ trials, asha for one objective, else fifo. Printed "
              "and recorded (Optuna user attr 'scheduler', MLflow param)", group="search", metavar="fifo|asha|moasha")
    asha_metric: Optional[str] = option(None, "stop bad trials early with ASHA on one metric", group="search",
                                        metavar="METRIC:max|min")
    grace_period: int = option(1, "epochs before the first rung of asha/moasha", group="search")
    seed: Optional[int] = option(  # sampler seed; None = a fresh one per new study (recorded)
        None, "sampler seed (default: a fresh one per study, printed and recorded in the Optuna study's user "
              "attrs and the MLflow parent run; --resume keeps it)", group="search")
    overrides: dict = option(  # fixed config for every trial; searched keys are pinned
        factory=dict, help="training config for every trial (repeatable), e.g. --set channels=8,16,32,64. A key the "
        "space searches (e.g. --set divergence=euc) is pinned: taken out of the search, the value used by every "
        "trial, and recorded (printed; Optuna user attr 'pinned'; MLflow parent param/tag study.pinned). Keys and "
        "values are checked with the training config before any trial: an unknown key or a bad value is an error "
        "(exit 2); a key the space fixes (model) cannot be set",
        group="search", flag="--set", action="append", metavar="KEY=VALUE", convert=parse_set)
    cpus_per_trial: float = option(1.0, group="execution")
    gpus_per_trial: float = option(0.0, "fractional allowed", group="execution")
    max_concurrent: int = option(2, group="execution")
    max_failures: int = option(2, "retries of a trial whose worker died", group="execution")
    address: Optional[str] = option(None, "an existing Ray cluster (e.g. auto)", group="execution")
    storage_path: str = option("runs/ray", "Ray's trial storage (default %(default)s)", group="execution")
    storage: str = option("sqlite:///optuna.db", "Optuna storage URL (default %(default)s)", group="tracking")
    study_name: Optional[str] = option(None, "default: SPACE-DATASET-TIMESTAMP", group="tracking")
    tracking_uri: str = option("sqlite:///mlflow.db", "MLflow tracking URI (default %(default)s)", group="tracking")
    experiment: str = option("vac-study", "MLflow experiment (default %(default)s)", group="tracking")
    # not on the command line
    checkpoint_every: int = 1
    progress_every_s: float = 30.0

    def resolve(self) -> "StudyOptions":
        """Fill in, in place, what was left to the study: the smoke test's sizes, the front ends
        (:func:`resolve_frontends`), the default objectives and the scheduler; checked on the way
        (StudyError, before any file, run or trial). Resolving again changes nothing. Returns self."""
        self._check_values()
        if self.smoke_test:
            self.num_samples, self.epochs = SMOKE_TEST
        self.frontends = resolve_frontends(self)
        if not self.objectives:
            self.objectives = default_objectives(self.space)
        self.scheduler = self._scheduler()
        self._check_overrides()
        return self

    def validate(self) -> None:
        """Check the options (StudyError for the first problem) as :meth:`resolve` completes
        them, changing nothing."""
        dataclasses.replace(self).resolve()

    def _check_values(self) -> None:
        if self.space not in SPACES:
            raise StudyError(f"unknown space {self.space!r}; choose one of {', '.join(sorted(SPACES))}")
        if self.num_samples < 1:
            raise StudyError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.epochs < 1:
            raise StudyError(f"--epochs must be >= 1, got {self.epochs}")
        if self.max_concurrent < 1:
            raise StudyError(f"--max-concurrent must be >= 1, got {self.max_concurrent}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise StudyError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if self.features and not Path(self.features).exists():
            raise StudyError(f"--features {self.features}: no such directory")
        if self.seed is not None and not 0 <= int(self.seed) < 2**32:
            raise StudyError(f"--seed must be in [0, 2**32), got {self.seed}")

    def _scheduler(self) -> str:
        """The scheduler (given or chosen), the objective and ASHA metric names checked against
        what the space's model reports: a typo is one clear error, not a study whose every trial fails."""
        model = space_model(self.space, self.epochs, self.frontends)
        try:
            valid = model_metrics(model) if model else None
        except ValueError:  # a model without declared metric names: names are not checked
            log.warning("no declared metric names for model %r; objectives are not checked", model)
            valid = None
        scope = f"for model {model} (space {self.space})"
        try:
            parsed = parse_objectives(self.objectives, valid, scope=scope)
            if self.asha_metric:
                parse_objective(self.asha_metric, valid, what="ASHA metric", scope=scope)
            from study.schedulers import choose_scheduler  # imports Ray: not at module level
            return choose_scheduler(self.scheduler, parsed, self.num_samples, self.asha_metric)
        except ValueError as exc:
            raise StudyError(str(exc)) from None

    def _check_overrides(self) -> None:
        """``--set`` values against the space's constants and the trial config."""
        consts = space_constants(self.space, self.epochs, self.frontends, pinned=pinned_params(self))
        for k, v in (self.overrides or {}).items():
            if k in consts and str(consts[k]) != str(v):
                raise StudyError(f"--set {k}={v}: space {self.space} fixes {k}={consts[k]!r}; "
                                 f"choose the space instead (--space)")
        # The trial config with a placeholder cache (the real one is checked again once built).
        check_config(self, fixed_config(self, self.n_clusters))


# The embedded default (synthetic set, no --features) is a demo sized for a laptop: narrower
# networks and the papers' batch of 64 (the recommended recipe's small batches pay off on real
# speech, at several times the wall time per epoch on tiny inputs).
EMBEDDED_SMALL = {"channels": "8,16,32,32", "gru_hidden": 32, "silhouette_sample": 500, "batch_size": 64}


def fixed_config(opts: StudyOptions, n_clusters: int) -> dict:
    """The config every trial starts from (the space's samples go over it); the feature cache
    is not part of it (it reaches trials through study.trainable.make_trainable)."""
    fixed = {"epochs": int(opts.epochs), "n_clusters": int(n_clusters),
             "checkpoint_every": int(opts.checkpoint_every)}
    if opts.frontends and len(opts.frontends) == 1:
        fixed["frontend"] = opts.frontends[0]
    if opts.gpus_per_trial > 0:
        fixed["device"] = "cuda"
    if not opts.features and opts.dataset == "synthetic" and not opts.root and SPACES.trains_network(opts.space):
        fixed.update(EMBEDDED_SMALL)
    if SPACES.trains_network(opts.space):
        # one training per trial: the recipe's voting restarts (UVAC on a per-speaker front end) report
        # nothing before their last candidate ends, so the schedulers could not judge them by epoch (and
        # Ray checkpoints a trial only when it reports); --set restarts=... overrides it
        fixed["restarts"] = 1
    fixed.update(opts.overrides or {})
    # the recipe every trial's config starts from, recorded with the study's fixed config
    fixed.setdefault("recipe", DEFAULTS["recipe"])
    return fixed


def resolve_frontends(opts: StudyOptions) -> list[str]:
    """The study's front ends: as given (checked against the presets), else the one of the cache
    given with ``--features``, else (spoken words) the front end the recipe is measured with for
    the space's model, else the dataset's default front end."""
    from features.datasets import DEFAULT_PRESET, SPEECH_DATASETS
    from features.presets import PRESETS

    if opts.frontends:
        names = [str(f) for f in opts.frontends]
        bad = [f for f in names if f not in PRESETS]
        if bad:
            raise StudyError(f"--frontends: unknown preset(s) {', '.join(bad)}; "
                             f"choose from {', '.join(sorted(PRESETS))}")
        if len(set(names)) != len(names):
            raise StudyError(f"--frontends: a front end is named twice: {','.join(names)}")
        return names
    if opts.features:
        from features.cache import CacheError, find_cache_dirs, read_cache_info
        given = Path(opts.features)
        inner = find_cache_dirs(given)
        try:
            return [read_cache_info(inner[0] if len(inner) == 1 else given).preset.name]
        except (CacheError, ValueError, OSError) as exc:
            raise StudyError(f"--features {opts.features}: {exc}") from None
    if opts.dataset not in DEFAULT_PRESET:
        raise StudyError(f"unknown dataset {opts.dataset!r}; choose one of {', '.join(sorted(DEFAULT_PRESET))}")
    if opts.dataset in SPEECH_DATASETS:  # the front end the recipe was measured with, for the space's model
        from trainables.config import recipe_frontend
        model = space_model(opts.space, opts.epochs)
        chosen = recipe_frontend(str((opts.overrides or {}).get("recipe", DEFAULTS["recipe"])), model or "")
        if chosen:
            return [chosen]
    return [DEFAULT_PRESET[opts.dataset]]


def space_constants(space: str, epochs: int, frontends=(), pinned: Optional[dict] = None) -> dict:
    """The constants a space returns (e.g. ``{"model": "cat_uvac"}``) on its first choices, or with
    ``pinned`` keys answering their pinned values (as :class:`PinnedSpace` runs it): a pinned
    ``augment=speed,shift`` takes the branch where the space searches ``consistency`` instead of
    fixing it to ``none``."""
    fn = get_space(space, epochs=epochs, frontends=frontends or ())
    return dict(fn(_PinnedTrial(RecordingTrial(), dict(pinned or {}))) or {})


def space_model(space: str, epochs: int = 1, frontends=()) -> Optional[str]:
    """The model a space trains (its ``model`` constant), or None when it sets none."""
    return space_constants(space, epochs, frontends).get("model")


def searched_params(space: str, epochs: int, frontends=()) -> list[str]:
    """Every parameter the space may suggest (conditional ones included)."""
    names: list[str] = []
    for f in (frontends or [None]):  # what a space suggests can depend on the front end
        params, _ = record_space(space, epochs=max(1, int(epochs)), frontends=frontends if f is None else [f])
        names += [c["name"] for c in params if c["name"] not in names]
    return names


def pinned_params(opts: StudyOptions) -> dict:
    """The ``--set`` keys the space would search: pinned to the given value in every trial."""
    searched = set(searched_params(opts.space, opts.epochs, opts.frontends))
    return {k: v for k, v in (opts.overrides or {}).items() if k in searched}


class PinnedSpace:
    """A space with some parameters pinned: their ``suggest_*`` calls answer the pinned value
    and never reach Optuna (so they are not searched, not in the trial's Optuna params), and
    the pinned values join the space's constants (so they are in every trial's config).
    Picklable (for --resume) when the wrapped space is."""

    def __init__(self, fn, pinned: dict):
        self.fn = fn
        self.pinned = dict(pinned)

    def __call__(self, trial):
        consts = self.fn(_PinnedTrial(trial, self.pinned)) or {}
        return {**consts, **self.pinned}


class _PinnedTrial:
    def __init__(self, trial, pinned: dict):
        self._trial = trial
        self._pinned = pinned

    def _suggest(self, kind: str, name: str, *args, **kwargs):
        if name in self._pinned:
            return self._pinned[name]
        return getattr(self._trial, kind)(name, *args, **kwargs)

    def suggest_float(self, name, *args, **kwargs):
        return self._suggest("suggest_float", name, *args, **kwargs)

    def suggest_int(self, name, *args, **kwargs):
        return self._suggest("suggest_int", name, *args, **kwargs)

    def suggest_categorical(self, name, *args, **kwargs):
        return self._suggest("suggest_categorical", name, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._trial, name)


def study_space(opts: StudyOptions, pinned: Optional[dict] = None):
    """The define-by-run function of the study: the space, with the pinned keys fixed."""
    fn = get_space(opts.space, epochs=opts.epochs, frontends=opts.frontends or ())
    pinned = pinned_params(opts) if pinned is None else pinned
    return PinnedSpace(fn, pinned) if pinned else fn


def check_config(opts: StudyOptions, fixed: dict) -> None:
    """Resolve one config of the space per front end (its lowest choices, pinned keys at their
    --set value) and check it against that front end, so that bad --set values fail now."""
    from features.loader import with_voices
    from features.presets import PRESETS
    from trainables.config import check_frontend, resolve_config
    from trainables.train import check_device

    pinned = pinned_params(opts)
    for frontend in (opts.frontends or [None]):
        choose = {**pinned, **({"frontend": frontend} if frontend else {})}
        rec = RecordingTrial(choose=choose)
        consts = get_space(opts.space, epochs=opts.epochs, frontends=opts.frontends or ())(rec) or {}
        sample = {c["name"]: choose.get(c["name"], c["choices"][0] if c["kind"] == "categorical" else c["low"])
                  for c in rec.calls if c["name"] not in pinned}
        preset = PRESETS.get(frontend) if frontend else None
        try:
            cfg = resolve_config({**fixed, **sample, **consts}, preset=preset)
            if preset is not None:  # the count the trials load the table with (ValueError: no voices there)
                preset = with_voices(preset, cfg["voices"])
            check_frontend(cfg, preset)
            if not opts.address:  # a local study's trials run on this machine: it must have the device
                check_device(cfg["device"], fix="use --set device=cpu")
        except ValueError as exc:
            where = f" on front end {frontend}" if frontend else ""
            raise StudyError(f"invalid trial config (--set or space){where}: {exc}") from None


def default_study_name(opts: StudyOptions) -> str:
    data = Path(opts.features).name if opts.features else opts.dataset
    return f"{opts.space}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def pinned_text(pinned: dict) -> str:
    """``k=v,k2=v2``: how pinned keys are recorded (MLflow tag, Optuna attr) and printed."""
    return ",".join(f"{k}={v}" for k, v in sorted(pinned.items()))
