"""The config keys, each defined once (:class:`Key`: name, default, choices or range, help).

The training config is one flat dict whose values are all ``str``, ``int``, ``float`` or ``bool``,
so that Ray Tune, Optuna and MLflow params take it as is. Its keys are defined here and nowhere
else: :data:`TRAINING_KEYS` are the training loop's (every model's); a model's own keys live with
its class (``ClusteringModel.config_keys``, base classes first, and its defaults of shared keys
in ``key_defaults``); the baselines' in :data:`trainables.baselines.BASELINE_KEYS`.
:mod:`trainables.config` assembles them into the flat dict (``DEFAULTS``), its validation
(``resolve_config``), the CLI flags (:func:`add_flags`) and the key reference (:func:`reference`,
committed as docs/CONFIG.md).

A key's type is the type of its default. Choice lists are owned by the modules that implement
them (``trainables.losses.DIVERGENCES``, ...); a key only points at them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from trainables.augment import parse_augment

__all__ = ["ConfigError", "Key", "TRAINING_KEYS", "defaults_of", "add_flags", "flag_values", "reference"]


class ConfigError(ValueError):
    """A config key or value is not acceptable; the message names the key."""


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class Key:
    """One config key. ``default`` fixes its type (bool, int, float or str).

    choices     the values allowed (a str key)
    positive    the value must be > 0
    low, high   the value must be >= low / <= high (both: the closed interval)
    zero_means  an int key where 0 means this ("off"), 1 is refused and 2 and more are counts
    sequence    a list or tuple of ints is accepted and joined with commas (``channels``)
    normalise   parses the value and returns its canonical form; its ValueError names the key
    structural  the key shapes the network: a resumed run must agree on it
    applies_when (key, value): the key has an effect only where that other key has that value
                (``pool`` only with ``encoder`` conv); elsewhere it is accepted and ignored
    """

    name: str
    default: Any
    help: str
    choices: tuple | None = None
    positive: bool = False
    low: float | None = None
    high: float | None = None
    zero_means: str = ""
    sequence: bool = False
    normalise: Callable[[Any], Any] | None = None
    structural: bool = False
    applies_when: tuple[str, Any] | None = None

    def applies(self, cfg: Mapping[str, Any]) -> bool:
        """Whether the key has an effect under the (resolved) config ``cfg``."""
        return self.applies_when is None or cfg.get(self.applies_when[0]) == self.applies_when[1]

    @property
    def kind(self) -> type:
        return type(self.default)

    def coerce(self, value: Any) -> Any:
        """``value`` as the key's type (strings from a CLI, JSON or MLflow are fine)."""
        key, kind = self.name, self.kind
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise ConfigError(f"{key}: expected a boolean, got {value!r}")
        if kind is int:
            return self._coerce_int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ConfigError(f"{key}: expected a number, got {value!r}")
            if hasattr(value, "item") and not isinstance(value, (int, float)):
                value = value.item()
            try:
                f = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
            if not math.isfinite(f):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return f
        if isinstance(value, (list, tuple)) and self.sequence:
            return ",".join(str(int(v)) for v in value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value.strip()

    def _coerce_int(self, value: Any) -> int:
        bad = ConfigError(f"{self.name}: expected an integer, got {value!r}")
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                raise bad from None
            if f.is_integer():
                return int(f)
        if hasattr(value, "item"):  # numpy scalars
            return self._coerce_int(value.item())
        raise bad

    def check(self, value: Any) -> Any:
        """``value`` (already of the key's type) checked against the choices and the range; returns
        its canonical form (:attr:`normalise`). Raises :class:`ConfigError` naming the key."""
        key = self.name
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{key}: expected one of {', '.join(self.choices)}, got {value!r}")
        if self.positive and not value > 0:
            raise ConfigError(f"{key}: must be > 0, got {value!r}")
        if self.high is not None and not self.low <= value <= self.high:
            raise ConfigError(f"{key}: must be in [{self.low:g}, {self.high:g}], got {value!r}")
        if self.low is not None and not value >= self.low:
            raise ConfigError(f"{key}: must be >= {self.low:g}, got {value!r}")
        if self.zero_means and value == 1:
            raise ConfigError(f"{key}: must be 0 ({self.zero_means}) or >= 2, got 1")
        if self.normalise is not None:
            try:
                return self.normalise(value)
            except ConfigError:
                raise
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return value

    def values_text(self) -> str:
        """What the key accepts, in words (the reference and ``--help``)."""
        if self.choices is not None:
            return ", ".join(map(str, self.choices))
        if self.zero_means:
            return f"0 ({self.zero_means}) or >= 2"
        if self.high is not None:
            return f"[{self.low:g}, {self.high:g}]"
        if self.positive:
            return "> 0"
        if self.low is not None:
            return f">= {self.low:g}"
        return {bool: "true, false", int: "an integer", float: "a number"}.get(self.kind, "a string")


def defaults_of(keys: Iterable[Key]) -> dict[str, Any]:
    """name -> default of ``keys``."""
    return {k.name: k.default for k in keys}


def _device(name: str) -> str:
    if not (name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def _augment(spec: str) -> str:
    return ",".join(parse_augment(spec)) or "none"


# The training loop's keys (every model's). ``model`` and ``recipe`` take their choices from their
# registries (trainables.models.MODELS with trainables.baselines.BASELINES; trainables.config.RECIPES).
TRAINING_KEYS: tuple[Key, ...] = (
    Key("model", "cat_uvac", "the model: a registered network (trainables.models.MODELS) or a baseline "
        "(trainables.baselines.BASELINES)", structural=True),
    Key("n_clusters", 0, "clusters C / categories K", low=0, zero_means="= number of classes", structural=True),
    Key("lr_start", 5e-4, "Adam learning rate at the first epoch, decaying exponentially to lr_end over the run",
        positive=True),
    Key("lr_end", 5e-5, "Adam learning rate at the last epoch", positive=True),
    Key("epochs", 500, "training epochs (the papers' 500; under a recipe that names its length, the length it "
        "is measured with: trainables.config.RECIPE_EPOCHS)", positive=True),
    Key("batch_size", 64, "mini-batch size", positive=True),
    Key("grad_clip", 0.0, "clip the gradient norm to this value; 0 = off", low=0),
    Key("seed", 0, "seeds torch, numpy and the shuffling generator", low=0),
    Key("device", "auto", "auto, cpu, cuda or cuda:N", normalise=_device),
    Key("precision", "fp32", "bf16: bf16 autocast (only honoured on CUDA)", choices=("fp32", "bf16")),
    Key("split_scheme", "random", "which split of the feature cache to use", choices=("random", "group")),
    Key("val_fold", 0, "the random split's validation fold (features.splits.rotate_validation): 0 = the split as "
        "stored; k swaps the validation clips with the k-th validation-sized fold of the training clips, test "
        "unmoved (cross-validation over seeds: benchmarks.quality --rotate-val)", low=0),
    Key("checkpoint_every", 1, "write a checkpoint every N epochs (and at the end); 0 = only at the end", low=0),
    Key("restarts", 1, "initialisations trained (trainables.restarts); the one whose clusters are best separated "
        "on the train split (silhouette of the reported representation, no labels) is kept: K-means' n_init for "
        "the networks", positive=True),
    Key("restart_epochs", 0, "epochs each restart trains before the choice (at least the model's warm-up); "
        "0 = the whole run", low=0),
    Key("restart_combine", "best", "what the restarts give: best (the best separated one, continued) or vote "
        "(every restart trained for the whole run votes for each clip's cluster; trainables.restarts)",
        choices=("best", "vote"), structural=True),
    Key("replicas", 1, "copies of the run trained from different seeds in lockstep (trainables.replicas); every "
        "reported metric is their mean, so a study judges a config by this many seeds; the first copy is kept; "
        "not with restarts", positive=True),
    Key("silhouette_sample", 2000, "silhouette on at most this many clips (fixed seed); 0 = all", low=0),
    Key("recipe", "recommended", "the base the other keys start from (trainables.config.RECIPES); values given "
        "explicitly always win"),
    Key("bn_reestimate", False, "recompute BatchNorm running statistics on the train split before every "
        "evaluation"),
    Key("augment", "none", "augmented views made on the fly (trainables.augment): none, or a comma separated "
        "subset of speed, warp, shift, eq", normalise=_augment),
    Key("neighbours", 0, "> 0: the view of a clip (for the consistency term and the instance contrast) is one "
        "of its k nearest training clips in the input (SCAN; trainables.neighbours), augmented when augment is "
        "set; 0 = off", low=0),
    Key("aug_speed", 0.1, "tempo perturbation: rate in 1 +- aug_speed (stretched clips: a time warp)",
        low=0, high=0.5),
    Key("aug_warp", 0.1, "vocal-tract-length warping: frequency factor in 1 +- aug_warp", low=0, high=0.5),
    Key("aug_shift", 0.1, "time shift of up to aug_shift x the clip's frames", low=0, high=0.5),
    Key("aug_eq", 0.2, "random EQ: amplitude of the smooth random spectral curve", low=0),
    Key("tta_views", 0, "test-time augmentation: a clip's cluster probabilities (and so its cluster) are their mean "
        "over the clip and this many augmented views of it, made as in training (augment) from a fixed seed, so "
        "every evaluation sees the same views (trainables.evaluation); 0 = the clip alone", low=0),
    Key("frontend", "", "the front end (features preset) the config trains on: a study searching front ends "
        "picks the feature cache by it; empty = the table given"),
    Key("voices", 0, "a front end normalised per inferred speaker (e.g. awe_voice): how many voices its clips are "
        "clustered into when the table is loaded (features.voice; the corpus's speaker count where known, else "
        "chosen on validation)", low=0, zero_means="the front end's count", structural=True),
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_flags(group: Any, keys: Iterable[Key]) -> None:
    """One ``--kebab-case`` option per key on an argparse parser or group (dest = the key, default
    None: only the flags given reach the config)."""
    for k in keys:
        text = f"{k.help}; {k.values_text()}; default {k.default!r}"
        group.add_argument(_flag(k.name), dest=k.name, default=None, metavar=k.kind.__name__.upper(),
                           help=text.replace("%", "%%"))


def flag_values(args: Any, keys: Iterable[Key]) -> dict[str, Any]:
    """The keys given as flags on parsed ``args``."""
    return {k.name: getattr(args, k.name) for k in keys if getattr(args, k.name, None) is not None}


def reference(keys: Iterable[Key], owners: Mapping[str, str]) -> str:
    """The key reference: a Markdown table, one row per key (``owners``: key -> who uses it)."""
    rows = ["| key | default | values | used by | meaning |", "|---|---|---|---|---|"]
    for k in keys:
        when = f" (only with {k.applies_when[0]} {k.applies_when[1]})" if k.applies_when else ""
        cells = [f"`{k.name}`", f"`{k.default!r}`", k.values_text(), owners.get(k.name, ""), k.help + when]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
