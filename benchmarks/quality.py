"""Quality on real speech: UVAC and categorical UVAC under each recipe (front end included)
against the strongest classical baseline measured in the same run, on the Free Spoken Digit
recordings in ``../shared/data/fsdd``.

    python -m benchmarks.quality                      # the CPU budget stated in the README
    python -m benchmarks.quality --epochs 100 --seeds 10 --device cuda   # full length on a GPU
    python -m benchmarks.quality --channels 8,16,32,64 --gru-hidden 64  # narrower networks (the budget before)
    python -m benchmarks.quality --smoke-test         # 120 clips, 1 epoch: the pipeline in minutes

For each split scheme (``random``: seeded 80/10/10; ``group``: speaker-disjoint) it prints and
saves (Markdown + CSV + every run's metrics under ``--out``):

* **Baselines and margins**: the classical suite (trainables.baseline_suite: K-means / GMM on each
  model front end, plain and standardised, and the acoustic-word-embedding pipeline on ``awe``,
  with CMN, with per-speaker CMVN and with CMVN per inferred speaker), the strongest named (chosen
  on validation accuracy, without speaker ids), and every model's test accuracy with its margin
  over it, seed by seed.
* **Table I** (the papers' layout), mean ± std over ``--seeds`` seeds, test split.
* **With per-speaker normalisation** (``--speaker``, random split): the models on the
  speaker-normalised variant of their front end against the strongest baseline *with* speaker ids.
* **Epochs to reach the strongest baseline** (validation), and the **ablation**: ``recommended``
  with each of its settings switched back to the paper's, over ``--ablation-seeds`` seeds (on a front
  end normalised per speaker, its per-speaker values too: the vote, the speaker independence, ...);
  ``--ablate encoder,speaker_independence`` runs only the settings switching those keys, in that order
  (benchmarks.quality_ablation).
* **Candidates** (``--candidate "head_init=fit head_warmup_epochs=5"``, repeatable): ``recommended``
  with those keys changed, as rows of the main tables beside ``recommended`` itself, on every split
  and seed: a change to a model is measured against the strongest baseline of the same run, and
  kept only if it pays on validation (the margin table shows validation and test). ``frontend=NAME``
  in a candidate trains it on that preset's cache (built with the others; its baselines join the
  suite), resolved as the recipe resolves for that front end (a real-valued one takes the recipe's
  real-valued values for the keys the candidate does not set). ``voices=N`` loads the voice front
  end with N inferred voices, and the suite then runs the voice baselines with N voices too
  (``awe_voice_vN_aligned``, ...), so the strongest baseline is chosen among them as well.
* ``--rotate-val``: cross-validation over seeds. Seed s validates on fold s mod K of the random
  split's non-test clips (config key ``val_fold``; fold 0 is the split as stored, the test split
  never moves), so the validation means of K seeds cover K times the clips one 10 % split holds: a
  choice that one split's 200 clips cannot resolve is made on all of them. The suite of a seed is
  fitted on that seed's split.

* **Provenance**: each run in ``runs.json`` keeps the commit it ran on (and how many tracked files
  differed from it) and a hash of the installed distributions; the report lists them, so two
  measurements of one job taken on different code or installations are told apart.

Runs are spread over ``--jobs`` worker processes with one torch thread each; every run is seeded;
a run that fails or diverges is a row of the table with its status, never a crash. Settings are
chosen on validation (the recipes come from studies on validation accuracy); tables report test.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from itertools import zip_longest
from pathlib import Path
from typing import Any

from benchmarks.quality_ablation import ablatable_keys, ablation_settings, select_ablation
from benchmarks.quality_runs import Job, job_key, load_runs, provenance, provenance_rows, resume_runs, save_runs
from benchmarks.quality_tables import (ablation_rows, baseline_rows, baseline_summary, epochs_to_reach,
                                       main_uses_speaker_ids, margin_rows, markdown)
from benchmarks.quality_worker import run_job
from trainables.status import TrialStatus

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
RECIPE_LABEL = {"paper": "paper", "paper-lr5e-3": "paper, lr 5e-3", "recommended": "recommended"}
MODEL_LABEL = {"uvac": "UVAC", "cat_uvac": "Cat. UVAC"}



# ------------------------------------------------------------------ planning
def model_frontend(a: argparse.Namespace, model: str, recipe: str) -> str:
    """The front end of a model under a recipe: ``--frontend``, else the recipe's (its front end included)."""
    from trainables.config import recipe_frontend

    return a.frontend or recipe_frontend(recipe, model) or a.frontend_default


def speaker_variant(preset: str) -> str | None:
    """The variant of a front end normalised with the speaker ids (``mfcc``, ``mfcc_raw``, ``mfcc_voice``
    -> ``mfcc_speaker``), if registered."""
    from features.presets import PRESETS

    base = next((preset[: -len(tail)] for tail in ("_raw", "_voice") if preset.endswith(tail)), preset)
    name = f"{base}_speaker"
    return name if name in PRESETS else None


def network_widths(a) -> dict:
    """The widths ``--channels`` / ``--gru-hidden`` ask for; {} (the model's own, the papers') by default."""
    return {**({"channels": a.channels} if a.channels else {}),
            **({"gru_hidden": a.gru_hidden} if a.gru_hidden else {})}


def _neural(a, model: str, recipe: str, split: str, seed: int, group: str = "main", frontend: str | None = None,
            extra: dict | None = None, label: str | None = None) -> Job:
    from trainables.config import recipe_epochs

    frontend = frontend or model_frontend(a, model, recipe)
    cfg = {"epochs": a.epochs or recipe_epochs(recipe, model), "device": a.device, "checkpoint_every": 0,
           "model": model, "recipe": recipe, "frontend": frontend, **network_widths(a), **(extra or {})}
    if a.batch_size:  # else each recipe's own
        cfg["batch_size"] = a.batch_size
    return Job("neural", split, seed, cfg, label or f"{MODEL_LABEL[model]} ({RECIPE_LABEL[recipe]})", group, frontend)


def parse_candidates(specs: list[str], models: list[str], frontend_of=None) -> list[tuple[str, dict]]:
    """``--candidate`` values (``"KEY=VALUE KEY=VALUE"``) as (model, overrides) pairs, one per model
    in ``models`` that owns every key of the candidate (a key of the training loop belongs to every
    model). ``frontend`` names a registered preset; it belongs to every model. Each value is coerced
    and the config resolved (for the candidate's front end) here, before any cache or run: a typo in
    a key or a value, or a setting its front end cannot take (``check_frontend``), is a
    :class:`~trainables.config_keys.ConfigError` naming it. ``frontend_of(model)`` is the front end a
    candidate without ``frontend`` trains on (default: the recipe's)."""
    from features.loader import with_voices
    from features.presets import PRESETS
    from trainables.config import all_keys, check_frontend, recipe_frontend, resolve_config
    from trainables.config_keys import TRAINING_KEYS, ConfigError
    from trainables.models import model_class

    keys, out = all_keys(), []
    owned = {m: {k.name for k in (*TRAINING_KEYS, *model_class(m).own_keys())} for m in models}
    for spec in specs:
        pairs = spec.split()
        if not pairs or any(p.count("=") != 1 or p.startswith("=") for p in pairs):
            raise ConfigError(f"--candidate {spec!r}: expected KEY=VALUE pairs separated by spaces")
        overrides = {}
        for k, v in (p.split("=") for p in pairs):
            if k not in keys:
                raise ConfigError(f"--candidate {spec!r}: unknown config key {k!r} (docs/CONFIG.md lists them)")
            if k in ("model", "recipe", "seed", "split_scheme", "epochs", "val_fold"):
                raise ConfigError(f"--candidate {spec!r}: {k} is set by the benchmark itself (use its own flag)")
            if k == "frontend" and v not in PRESETS:
                raise ConfigError(f"--candidate {spec!r}: unknown front end {v!r} "
                                  f"(one of {', '.join(sorted(PRESETS))})")
            overrides[k] = keys[k].coerce(v)
        takers = [m for m in models if owned[m].issuperset(set(overrides) - {"frontend"})]
        if not takers:
            raise ConfigError(f"--candidate {spec!r}: no model of --models {','.join(models)} has all of these keys")
        for m in takers:
            default = frontend_of(m) if frontend_of else recipe_frontend("recommended", m) or "audiomnist"
            preset = PRESETS[overrides.get("frontend") or default]
            cfg = resolve_config({"model": m, "recipe": "recommended", **overrides}, preset=preset)
            try:  # the table the run will load (a voice count on a front end without voices: refused)
                check_frontend(cfg, with_voices(preset, cfg["voices"]))
            except ValueError as e:
                raise ConfigError(f"--candidate {spec!r} ({m}): {e}") from None
            out.append((m, overrides))
    return out


def candidate_label(model: str, overrides: dict) -> str:
    return f"{MODEL_LABEL[model]} (recommended, {' '.join(f'{k}={v}' for k, v in overrides.items())})"


def suite_config(fronts: list[str], candidates) -> dict:
    """The suite job's config: the model front ends, and the voice counts candidates set (``voices``; the
    suite then runs the voice baselines at each count too, so a candidate is compared with them)."""
    counts = sorted({int(o["voices"]) for _, o in candidates if int(o.get("voices", 0))})
    return {"frontends": fronts, **({"voices": counts} if counts else {})}


def fold_of(a: argparse.Namespace, split: str, seed: int) -> dict:
    """The validation fold of a job on ``split`` with ``seed`` (``--rotate-val``: seed mod the split's
    folds, on the random split only) as config keys; {} for fold 0, the split as stored, so a rotated
    benchmark's seed 0 is the same job as an unrotated one's."""
    folds = int(getattr(a, "val_folds", 0) or 0)
    fold = seed % folds if folds and split == "random" else 0
    return {"val_fold": fold} if fold else {}


def plan_jobs(a: argparse.Namespace) -> list[Job]:
    from features.presets import PRESETS

    jobs: list[Job] = []
    fronts = a.model_frontends
    for split in a.splits:
        for seed in range(a.seeds):
            jobs.append(Job("labels", split, seed, label="labels as clusters", frontend=fronts[0]))
            jobs.append(Job("suite", split, seed, suite_config(fronts, a.candidates), "classical baselines",
                            frontend=fronts[0]))
            for model in a.models:
                for recipe in a.recipes:
                    jobs.append(_neural(a, model, recipe, split, seed))
            for model, overrides in a.candidates:
                extra = {k: v for k, v in overrides.items() if k != "frontend"}
                jobs.append(_neural(a, model, "recommended", split, seed, frontend=overrides.get("frontend"),
                                    extra=extra, label=candidate_label(model, overrides)))
    if a.speaker:
        for seed in range(a.seeds):
            for model in a.models:
                variant = speaker_variant(model_frontend(a, model, "recommended"))
                if variant:
                    jobs.append(_neural(a, model, "recommended", "random", seed, "speaker", variant,
                                        label=f"{MODEL_LABEL[model]} (recommended, {variant})"))
    per_model = []
    for model in (a.models if a.ablation_seeds > 0 and "recommended" in a.recipes else []):
        frontend = model_frontend(a, model, "recommended")
        settings = select_ablation(ablation_settings(model, PRESETS[frontend]), a.ablate or None)
        per_model.append([(model, frontend, off) for off in settings])
    # the models' settings interleaved, most informative first (ablation_settings' order, or --ablate's)
    for model, frontend, off in (entry for rank in zip_longest(*per_model) for entry in rank if entry):
        what = ", ".join(f"{k}={v}" for k, v in off.items())
        for seed in range(a.ablation_seeds):
            jobs.append(_neural(a, model, "recommended", "random", seed, "ablation", frontend, off,
                                f"{MODEL_LABEL[model]}: {what}"))
    # every job of a seed (labels, suite, models) on that seed's validation fold (--rotate-val)
    return [replace(j, config={**j.config, **fold_of(a, j.split, j.seed)}) for j in jobs]


# ------------------------------------------------------------------ tables
def _rows_for(results: list[tuple[Job, dict]], split: str, group: str = "main") -> list[dict]:
    """Rows for :func:`analysis.tables.table_one`: labels, the suite's baselines, the models."""
    rows: dict[str, dict] = {}
    for job, res in results:
        if job.split != split or job.group != group or job.kind == "suite":
            continue
        model = job.config.get("model", "labels" if job.kind == "labels" else "")
        row = rows.setdefault(job.label, {"method": job.label, "model": model, "metrics": [], "n_runs": 0})
        row["n_runs"] += 1
        if res["status"] == TrialStatus.COMPLETE:
            row["metrics"].append(res["metrics"])
    ordered = list(rows.values())
    if group == "main":
        baselines = [{"method": f"{b['label']} [{name}]", "model": "kmeans", "metrics": list(b["seeds"].values()),
                      "n_runs": len(b["seeds"])} for name, b in baseline_rows(results, split).items()]
        ordered = ordered[:1] + baselines + ordered[1:]
    return ordered


def write_report(results: list[tuple[Job, dict]], a: argparse.Namespace, header: str) -> str:
    """Print-ready Markdown of every table; CSV files beside it in ``a.out``."""
    import pandas as pd

    from analysis.tables import table_one, table_one_markdown

    save_runs(results, a.out)  # the raw results first: a failure below loses no run
    parts = [header]
    for split in a.splits:
        summary = baseline_summary(results, split)
        pd.DataFrame(summary).to_csv(a.out / f"baselines_{split}.csv", index=False)
        parts.append(f"### {split} split: the classical baselines (same clips and split, mean ± std over seeds)"
                     f"\n\n{markdown(summary)}")
        side = main_uses_speaker_ids(results, split)  # models on a speaker-normalised front end: --frontend
        margins, best = margin_rows(results, split, side_information=side)
        pd.DataFrame(margins).to_csv(a.out / f"margins_{split}.csv", index=False)
        parts.append(f"### {split} split: the strongest classical baseline (`{best}`, chosen on validation, "
                     f"{'with' if side else 'no'} speaker ids) and each model's margin over it (test, points, "
                     f"paired by seed)\n\n{markdown(margins)}")
        df = table_one(_rows_for(results, split))
        df.to_csv(a.out / f"table1_{split}.csv", index=False)
        parts.append(table_one_markdown(df, title=f"### Table I, {split} split (test, mean ± std over seeds)"))
        reach = epochs_to_reach(results, split, side_information=side)
        pd.DataFrame(reach).to_csv(a.out / f"epochs_to_baseline_{split}.csv", index=False)
        parts.append(f"### Epochs to reach the strongest baseline, {split} split (validation)\n\n{markdown(reach)}")
    if any(j.group == "speaker" for j, _ in results):
        margins, best = margin_rows(results, "random", group="speaker", side_information=True)
        pd.DataFrame(margins).to_csv(a.out / "margins_speaker.csv", index=False)
        parts.append(f"### With per-speaker normalisation (random split, test): against the strongest baseline "
                     f"with speaker ids (`{best}`)\n\n{markdown(margins)}")
    if any(j.group == "ablation" for j, _ in results):
        abl = ablation_rows(results, {m: MODEL_LABEL[m] for m in a.models})
        pd.DataFrame(abl).to_csv(a.out / "ablation.csv", index=False)
        parts.append("### Ablation: recommended with each setting switched back to the paper's (random split, "
                     f"test, {a.ablation_seeds} seeds)\n\n{markdown(abl)}")
    prov = provenance_rows(results)
    parts.append("### Provenance: the code and installation of the runs (runs.json keeps each run's)\n\n"
                 + ("" if len(prov) == 1 else "Runs from more than one commit or installation: a difference "
                    "between them may be the code's or the installation's, not the setting's.\n\n") + markdown(prov))
    failed = [(j, r) for j, r in results if r["status"] != TrialStatus.COMPLETE]
    if failed:
        parts.append("### Runs that did not complete\n\n" + "\n".join(
            f"- {j.label}, {j.split} split, seed {j.seed}: {r['status']} {r.get('reason', '')}" for j, r in failed))
    text = "\n\n".join(parts) + "\n"
    (a.out / "quality.md").write_text(text)
    return text


# ------------------------------------------------------------------ command line
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="FSDD root (recordings/ inside)")
    p.add_argument("--features-out", type=Path, default=Path("runs/features/fsdd"), help="where the caches go")
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks/quality"), help="tables go here")
    p.add_argument("--frontend", default="", help="one front end for every model (default: each recipe's)")
    p.add_argument("--limit", type=int, default=0, help="use at most this many clips (0 = all 2,000)")
    p.add_argument("--epochs", type=int, default=0,
                   help="0 = each recipe's (trainables.config.recipe_epochs: 30; categorical UVAC's recommended 60)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--ablation-seeds", type=int, default=3, help="0 = no ablation")
    p.add_argument("--ablate", default="", metavar="KEY,...", type=lambda s: [k for k in s.split(",") if k],
                   help="ablate only the settings that switch back these config keys, in this order (default: "
                        "every setting, most informative first); a setting is named by any of its keys")
    p.add_argument("--splits", default="random,group", help="random and/or group (speaker-disjoint)")
    p.add_argument("--models", default="uvac,cat_uvac")
    p.add_argument("--recipes", default="paper,recommended")
    p.add_argument("--no-speaker", dest="speaker", action="store_false",
                   help="skip the models on per-speaker-normalised front ends")
    p.add_argument("--channels", default="", help="encoder channels (default: the model's own, the papers' "
                                                   "16,32,64,128; 8,16,32,64 was the benchmark's before 2026-12-07)")
    p.add_argument("--gru-hidden", type=int, default=0, help="GRU units (0: the model's own, the papers' 128)")
    p.add_argument("--batch-size", type=int, default=0, help="0 = the recipe's (papers: 64)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    p.add_argument("--smoke-test", action="store_true", help="tiny: 120 clips, 1 epoch, 1 seed, no ablation")
    p.add_argument("--candidate", action="append", default=[], metavar='"KEY=VALUE ..."',
                   help="also run recommended with these config keys changed, on every split and seed "
                        "(repeatable; each a row of the main tables)")
    p.add_argument("--rotate-val", action="store_true",
                   help="cross-validation over seeds on the random split: seed s validates on fold s mod K of the "
                        "non-test clips (config key val_fold; fold 0 is the split as stored, test never moves), so "
                        "K seeds choose on every non-test clip instead of one 10 %% split")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in <--out>/runs.json (same jobs, not failed, a model's trained "
                        "with the config its recipe resolves to now) and run the rest; runs.json as it was is first "
                        "copied to runs.before-resume-<time>.json when any saved run is not carried over")
    p.add_argument("--tables-from", type=Path, metavar="RUNS_JSON",
                   help="re-render the tables from a previous run's runs.json (no training)")
    return p


def _check(a: argparse.Namespace) -> list[str]:
    from features.presets import PRESETS
    from trainables.config import RECIPES

    return ([m for m in a.models if m not in MODEL_LABEL] + [r for r in a.recipes if r not in RECIPES]
            + [s for s in a.splits if s not in ("random", "group")]
            + ([a.frontend] if a.frontend and a.frontend not in PRESETS else []))


def check_ablate(a: argparse.Namespace) -> None:
    """``--ablate``'s keys, each switched by the ablation of some model of ``--models`` (on its recommended
    front end), or a ValueError naming the keys that are: a typo stops the benchmark before any run."""
    from features.presets import PRESETS

    if not a.ablate:
        return
    switched = list(dict.fromkeys(k for m in a.models for k in ablatable_keys(
        ablation_settings(m, PRESETS[model_frontend(a, m, "recommended")]))))
    unknown = [k for k in a.ablate if k not in switched]
    if unknown:
        raise ValueError(f"--ablate: {', '.join(unknown)} not switched by the ablation of {', '.join(a.models)} "
                         f"(it switches: {', '.join(switched)})")


def epochs_text(a: argparse.Namespace) -> str:
    """The epochs of each model and recipe run (``--epochs 0``: each recipe's), for the header."""
    from trainables.config import recipe_epochs

    return "epochs " + ", ".join(f"{MODEL_LABEL[m]} ({RECIPE_LABEL[r]}) {recipe_epochs(r, m)}"
                                 for m in a.models for r in a.recipes)


def validation_fold_count(cache_dir: str) -> int:
    """How many validation folds the random split of ``cache_dir`` offers (features.splits.validation_folds)."""
    from features.cache import load_table
    from features.splits import validation_folds

    return validation_folds(load_table(cache_dir, split_scheme="random", verify=False).split)


def build_caches(a: argparse.Namespace) -> tuple[dict[str, str], Any]:
    """Every cache the jobs need, built (or found up to date) before the pool starts: each model
    front end and the reference front ends, all from the same FSDD clips."""
    from features.build import scan
    from features.cache import build_cache
    from features.companion import companion_cache
    from features.frontend import get_preset
    from trainables.baseline_suite import REFERENCE_PRESETS

    needed = list(dict.fromkeys([*a.model_frontends, *a.extra_frontends, *REFERENCE_PRESETS]))
    summary = build_cache(scan("fsdd", a.root, a.features_out, 0), get_preset(needed[0]), a.features_out,
                          limit=a.limit or None, progress=False)
    caches = {needed[0]: str(summary.cache_dir)}
    for name in needed[1:]:
        caches[name] = str(companion_cache(summary.cache_dir, get_preset(name)))
    return caches, summary


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.smoke_test:
        a.limit, a.epochs, a.seeds, a.ablation_seeds = 120, 1, 1, 0
    a.splits = [s for s in a.splits.split(",") if s]
    a.models = [m for m in a.models.split(",") if m]
    a.recipes = [r for r in a.recipes.split(",") if r]
    bad = _check(a)
    if bad:
        print(f"error: unknown model / recipe / split / front end: {', '.join(bad)}", file=sys.stderr)
        return 2
    from trainables.config_keys import ConfigError

    try:
        a.frontend_default = "audiomnist"
        a.candidates = parse_candidates(a.candidate, a.models, lambda m: model_frontend(a, m, "recommended"))
        check_ablate(a)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.tables_from:
        results = load_runs(a.tables_from)
        a.splits = [s for s in a.splits if any(j.split == s for j, _ in results)]
        a.ablation_seeds = len({j.seed for j, _ in results if j.group == "ablation"})
        print(write_report(results, a, f"Tables re-rendered from {a.tables_from}"))
        return 0
    if not (a.root / "recordings").is_dir():
        print(f"error: {a.root} has no recordings/ folder (FSDD layout)", file=sys.stderr)
        return 2
    a.model_frontends = list(dict.fromkeys([*(model_frontend(a, m, r) for m in a.models for r in a.recipes),
                                            *(o.get("frontend") or model_frontend(a, m, "recommended")
                                              for m, o in a.candidates)]))
    a.extra_frontends = [v for v in (speaker_variant(model_frontend(a, m, "recommended")) for m in a.models)
                         if v] if a.speaker else []
    caches, summary = build_caches(a)
    if a.rotate_val:
        a.val_folds = validation_fold_count(caches[a.model_frontends[0]])
        print(f"--rotate-val: {a.val_folds} validation folds on the random split; seed s validates on fold "
              f"s mod {a.val_folds}", flush=True)
    jobs = plan_jobs(a)
    own = "the model's own"
    header = (f"Quality on real speech: FSDD ({summary.n_used} clips, 4 speakers), "
              f"{f'{a.epochs} epochs' if a.epochs else epochs_text(a)}, {a.seeds} "
              f"seed(s), channels {a.channels or own}, GRU {a.gru_hidden or own}, "
              f"batch {a.batch_size or 'of the recipe'}, device {a.device}; "
              f"front ends {', '.join(a.model_frontends)}"
              f"{f'; validation rotated over {a.val_folds} folds' if a.rotate_val else ''}\n\n"
              f"Command: python -m benchmarks.quality {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(header, flush=True)
    print(f"{len(jobs)} runs on {a.jobs} worker(s); caches {', '.join(f'{k}: {v}' for k, v in caches.items())}",
          flush=True)
    prov = provenance()
    print(f"provenance: commit {prov['commit'][:10]} ({prov['changed_files']} tracked file(s) changed), "
          f"installation {prov['installation']}, torch {prov['versions']['torch']}", flush=True)
    t0 = time.time()
    results, todo, lines = resume_runs(jobs, a.out / "runs.json") if a.resume else ([], list(jobs), [])
    if a.resume:
        print(f"resumed: {len(results)} run(s) kept from {a.out / 'runs.json'}, {len(todo)} to run", flush=True)
    for line in lines:
        print(f"resume: {line}", flush=True)
    # the classical suite first (cheap, and every table needs it), then the models' main runs, then
    # the per-speaker runs and the ablation: a benchmark stopped early still has complete tables
    ordered = sorted(todo, key=lambda j: (j.kind == "neural", ("main", "speaker", "ablation").index(j.group)))
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futures = {pool.submit(run_job, j, caches): j for j in ordered}
        for fut in as_completed(futures):
            job, res = futures[fut], {**fut.result(), "provenance": prov}
            results.append((job, res))
            save_runs(results, a.out)
            acc = res["metrics"].get("test/acc", math.nan)
            print(f"[{len(results):3d}/{len(jobs)} {time.time() - t0:6.0f}s] {job.label:<44} {job.split:<6} "
                  f"seed {job.seed}: {res['status']:<9} test ACC {100 * acc:5.1f}%  ({res['time_s']:.0f} s)",
                  flush=True)
    order = {job_key(j): i for i, j in enumerate(jobs)}
    results.sort(key=lambda jr: order[job_key(jr[0])])
    text = write_report(results, a,
                        header + f"\n\nWall time: {(time.time() - t0) / 60:.1f} min on {os.cpu_count()} CPU(s)")
    print()
    print(text)
    print(f"tables written to {a.out}/")
    return 0 if all(r["status"] != TrialStatus.FAILED for _, r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
