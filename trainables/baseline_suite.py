"""The classical baselines a model must beat, run together, and which of them is the strongest.

A model "beats the baseline" only against the strongest one measured on the same split. The suite:

* on the model's own table: ``kmeans`` and ``gmm`` (the papers', on the flattened [0, 1] input),
  ``kmeans_std`` and ``gmm_std`` (every dimension standardised; PCA-20 + full-covariance GMM);
* on each **reference** front end (:data:`REFERENCE_PRESETS`), the same clips featurised again
  (:func:`features.companion.companion_cache`) and re-split exactly as the model's table (rows
  matched by id): the classical acoustic-word-embedding pipeline (Kamper, Jansen and Goldwater
  2016; SPEC section 8): ``awe_kmeans`` and ``awe_gmm`` (13 MFCCs, activity-trimmed, CMN,
  resampled to 10 frames, standardised; K-means with 10 restarts, or PCA-20 + full GMM), and
  ``awe_speaker_*``, the same with per-speaker CMVN instead of CMN, only where the dataset names
  its speakers, and ``awe_speaker_fair``, K-means on it whose clusters are kept independent of
  the speaker (trainables.fair_kmeans: the classical counterpart of the models'
  ``speaker_independence``), and ``awe_speaker_aligned``, K-means within each speaker with the
  speakers' clusters matched (trainables.aligned_kmeans). Those use the speaker ids (side
  information): :func:`strongest` keeps them apart;
  ``awe_voice_*``, the pipeline and the aligned K-means with the speakers *inferred* from the
  clips' voice profiles instead (features.voice: per-voice CMVN; no speaker ids, any dataset;
  left out, with a warning, where the clips are too few for the preset's voices);
  and ``awe_raw_factorial``: the same MFCCs without any normalisation, clustered by a factorial
  mixture of 10 content x 6 style clusters (trainables.models.factorial), which learns the
  speaker offsets that per-speaker CMVN removes, without the speaker ids (measured here: above the
  pipeline's GMM; not a published baseline, kept because a model must beat the strongest we know).
  The two strongest also run as the vote of 3 fits (``awe_speaker_fair_vote``, ``awe_raw_factorial_vote``:
  trainables.baselines.run_vote), the classical counterpart of the networks' voting restarts.

The strongest is chosen on **validation** accuracy (mean over seeds) and reported on test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from trainables.baselines import BASELINES

__all__ = ["REFERENCE_PRESETS", "OWN_BASELINES", "PIPELINE_BASELINES", "REFERENCE_BASELINES", "SuiteResult",
           "reference_tables", "align_to", "own_name", "run_suite", "run_references", "strongest", "strongest_name"]

REFERENCE_PRESETS = ("awe", "awe_speaker", "awe_voice", "awe_raw")
OWN_BASELINES = ("kmeans", "gmm", "kmeans_std", "gmm_std")  # on the model's table
PIPELINE_BASELINES = {"kmeans": "kmeans_std", "gmm": "gmm_std"}  # on a reference table: the pipeline's step
# per reference front end: which baselines run on it (the factorial mixture needs the offsets CMN removes)
REFERENCE_BASELINES = {"awe": PIPELINE_BASELINES,
                       "awe_speaker": {**PIPELINE_BASELINES, "fair": "fair_kmeans", "fair_vote": "fair_kmeans_vote",
                                       "aligned": "aligned_kmeans"},
                       "awe_voice": {**PIPELINE_BASELINES, "aligned": "aligned_kmeans"},
                       "awe_raw": {"factorial": "factorial", "factorial_vote": "factorial_vote"}}


@dataclass
class SuiteResult:
    """One baseline of the suite: ``name`` (``awe_gmm``), its row label, the front end it ran on,
    whether that front end used side information, and its metrics (mean over seeds, plus each seed)."""

    name: str
    label: str
    preset: str
    side_information: bool
    metrics: dict[str, float]
    per_seed: list[dict[str, float]] = field(default_factory=list)
    n_rows: int = 0

    def value(self, key: str) -> float:
        return float(self.metrics.get(key, float("nan")))


def own_name(preset: str, baseline: str) -> str:
    """The name of an own-table baseline on another front end than the main one
    (``mfcc_raw_table_kmeans``): never the name of a reference pipeline row (``awe_kmeans``)."""
    return f"{preset}_table_{baseline}"


def align_to(ref, table):
    """``ref``'s rows for the clips of ``table`` (matched by id), with ``table``'s split; clips of
    ``table`` that ``ref`` lacks are left out (``len`` tells how many remain); its validation fold too."""
    pos = {k: i for i, k in enumerate(np.asarray(ref.ids).astype(str))}
    ids = np.asarray(table.ids).astype(str)
    keep = np.array([i for i, k in enumerate(ids) if k in pos], dtype=np.int64)
    out = ref.take(np.array([pos[k] for k in ids[keep]], dtype=np.int64))
    out.split = np.asarray(table.split)[keep]
    out.val_fold = int(getattr(table, "val_fold", 0))
    return out


def reference_tables(cache_dir: str | Path, table, presets: Iterable[str] = REFERENCE_PRESETS,
                     dataset_group_kind: str | None = None) -> dict[str, Any]:
    """The reference front ends' tables of the clips of ``cache_dir``, aligned to ``table``
    (built beside it when missing; a speaker-normalised one only where groups are speakers, a
    voice-normalised one only where the clips are enough for its voices: else a warning; with the
    voice count of ``table`` where that infers voices too)."""
    import warnings

    from features.cache import load_table
    from features.companion import companion_cache
    from features.datasets import GROUP_KIND
    from features.frontend import get_preset
    from features.voice import VoiceError

    kind = dataset_group_kind if dataset_group_kind is not None else GROUP_KIND.get(str(table.dataset))
    out = {}
    for name in presets:
        preset = get_preset(name)
        if preset.side_information and kind != "speaker":
            continue
        try:
            ref = load_table(companion_cache(cache_dir, preset), voices=_same_voices(preset, table))
        except VoiceError as exc:
            warnings.warn(f"baseline suite: front end {name!r} left out: {exc}", stacklevel=2)
            continue
        out[name] = align_to(ref, table)
    return out


def _same_voices(preset, table) -> int | None:
    """The voice count of ``table`` for a companion that infers voices too (None: the preset's)."""
    both = preset.normalisation == "voice" and table.preset.normalisation == "voice"
    return table.preset.voices if both else None


def _mean(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for r in runs for k in r if isinstance(r[k], (int, float))})
    return {k: float(np.nanmean([r.get(k, np.nan) for r in runs])) for k in keys}


def _run(name: str, label: str, baseline: str, table, n_clusters: int, seeds, sample_size) -> SuiteResult:
    runs = [dict(BASELINES[baseline].run(table, n_clusters, int(s), sample_size=sample_size).metrics) for s in seeds]
    preset = getattr(table.preset, "name", "") or ""
    side = bool(getattr(table.preset, "side_information", False))
    if getattr(table.preset, "normalisation", None) == "voice":  # the speakers it reads are inferred
        label = label.replace("speaker ids", "inferred speakers")
    return SuiteResult(name, label, preset, side, _mean(runs), runs, len(table))


def run_suite(table, references: Mapping[str, Any] | None = None, n_clusters: int | None = None,
              seeds: Iterable[int] = (0,), sample_size: int | None = 2000) -> list[SuiteResult]:
    """Every baseline of the suite on ``table`` and on each reference table (see the module doc)."""
    k = int(n_clusters) if n_clusters else len(table.classes)
    seeds = list(seeds)
    own = getattr(table.preset, "name", "") or "input"
    results = [_run(b, f"{BASELINES[b].label} ({own})", b, table, k, seeds, sample_size) for b in OWN_BASELINES]
    return results + run_references(references or {}, k, seeds, sample_size)


def run_references(references: Mapping[str, Any], n_clusters: int, seeds: Iterable[int] = (0,),
                   sample_size: int | None = 2000) -> list[SuiteResult]:
    """The pipeline baselines on each reference table (``preset name -> table``, aligned to the model's):
    ``{preset}_{short}`` for each of :data:`REFERENCE_BASELINES`; a table with another voice count than
    its preset's (``with_voices``) is named ``{preset}_v{count}_{short}`` and labelled with its count."""
    out, seeds = [], list(seeds)
    for preset, ref in references.items():
        own_voices = get_voices(preset)
        count = getattr(ref.preset, "voices", None)
        other = getattr(ref.preset, "normalisation", None) == "voice" and count != own_voices
        for short, b in REFERENCE_BASELINES.get(preset, PIPELINE_BASELINES).items():
            name = f"{preset}_v{count}_{short}" if other else f"{preset}_{short}"
            label = f"{BASELINES[b].label} ({preset}" + (f", {count} voices)" if other else ")")
            out.append(_run(name, label, b, ref, int(n_clusters), seeds, sample_size))
    return out


def get_voices(preset: str) -> int | None:
    """The voice count of the preset named ``preset`` as registered (None: it infers no voices)."""
    from features.frontend import get_preset

    p = get_preset(preset)
    return p.voices if p.normalisation == "voice" else None


def strongest_name(candidates: Iterable[tuple[str, float, bool]], *, side_information: bool = False) -> str | None:
    """The one rule for "the strongest baseline", over (name, validation accuracy, uses speaker
    ids): the highest finite accuracy among the baselines without side information, or
    (``side_information``) among those that use speaker ids, the comparison for a model on
    speaker-normalised features. The suite, the study summary and the benchmark all call it."""
    pool = [(acc, name) for name, acc, side in candidates
            if bool(side) == side_information and acc is not None and np.isfinite(acc)]
    return max(pool, key=lambda p: p[0])[1] if pool else None


def strongest(results: Iterable[SuiteResult], *, side_information: bool = False,
              split: str = "val") -> SuiteResult | None:
    """The suite result :func:`strongest_name` picks on ``split`` accuracy."""
    results = list(results)
    name = strongest_name(((r.name, r.value(f"{split}/acc"), r.side_information) for r in results),
                          side_information=side_information)
    return next((r for r in results if r.name == name), None)
