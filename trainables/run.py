"""One neural run: its state (:class:`Run`), its set-up (:func:`setup_run`: seeds, data on the
device, the registered model and its optimizer, or a checkpoint's state) and one epoch
(:func:`run_epoch`: a pass over the shuffled train split, then the validation metrics).

:mod:`trainables.loop` composes these into the runs it reports: a plain run, restarts, replicas.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from trainables.augment import augmenter_for
from trainables.checkpoint import clone_tree, rng_state, set_rng_state
from trainables.config import structural_keys
from trainables.evaluation import EVAL_BATCH, evaluate
from trainables.models import Batch, ClusteringModel, build_model
from trainables.neighbours import NeighbourViews
from trainables.schedules import lr_at
from trainables.split_data import SplitData, fits_on_device

__all__ = ["Run", "setup_run", "train_epoch", "run_epoch"]


@dataclass
class Run:
    """The state of one neural run: what the epoch loop reads and updates."""

    cfg: dict[str, Any]
    model: ClusteringModel
    optimizer: torch.optim.Optimizer
    train_data: SplitData
    shuffle_gen: torch.Generator
    np_gen: np.random.Generator
    autocast: Any
    resident: bool  # the data live on the device (decided once, for every split)
    seed: int  # what seeded this run (config["seed"], or a restart's: trainables.restarts)
    augmenter: Any = None  # makes each batch's augmented view (trainables.augment), or None
    neighbours: NeighbourViews | None = None  # draws each batch's neighbour view (trainables.neighbours)
    start_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)  # final metrics of the run as a whole (restarts)

    def train_batches(self) -> Iterator[Batch]:
        return self.train_data.in_order(EVAL_BATCH)

    def snapshot(self, epoch: int) -> dict[str, Any]:
        return {"model": clone_tree(self.model.state_dict()), "optimizer": clone_tree(self.optimizer.state_dict()),
                "training_state": clone_tree(self.model.training_state()),
                "epoch": int(epoch), "global_step": int(self.global_step), "seed": int(self.seed),
                "rng": clone_tree(rng_state(self.shuffle_gen, self.np_gen)), "history": [dict(h) for h in self.history]}


def setup_run(cfg, table, device, use_bf16, state: dict | None, seed: int | None = None) -> Run:
    """Seeds (``seed``, default the config's), data on the device, the registered model and its
    optimizer; restored from ``state`` when given (a loaded checkpoint's run state, one replica's:
    trainables.loop), else the model's data-dependent initialisation."""
    seed = int(cfg["seed"]) if seed is None else int(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    shuffle_gen = torch.Generator(device="cpu")
    shuffle_gen.manual_seed(seed)
    tr_tab = table.select("train")
    if len(tr_tab) < 2:
        raise ValueError(f"the train split has {len(tr_tab)} clip(s); at least 2 are needed")
    model = build_model(cfg, *table.shape, preset=table.preset).to(device)
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
    resident = fits_on_device(table, device)
    run = Run(cfg, model, torch.optim.Adam(model.parameters(), lr=float(cfg["lr_start"])),
               SplitData(tr_tab, device, resident, groups=bool(type(model).speaker_id_settings(cfg))), shuffle_gen,
               np.random.default_rng(seed), autocast, resident, seed,
               augmenter_for(cfg, table.preset))
    if int(cfg["neighbours"]) > 0:
        run.neighbours = NeighbourViews(run.train_data.spec, int(cfg["neighbours"]))
    if state is None:
        model.on_train_start(run.train_batches, seed)
        return run
    old_key = state.get("meta", {}).get("cache_key")
    if old_key is not None and old_key != table.cache_key:
        raise ValueError(
            f"cannot resume: the checkpoint was trained on feature cache {old_key}, the features given now are "
            f"{table.cache_key} (rebuilt or another cache: clips may have moved between splits); start a new run")
    old = state.get("config", {})
    diff = [k for k in structural_keys() if k in old and str(old[k]) != str(cfg[k])]
    if diff:
        raise ValueError("cannot resume: the checkpoint's config differs on "
                         + ", ".join(f"{k} ({old[k]!r} vs {cfg[k]!r})" for k in diff))
    model.load_state_dict(state["model"])
    model.load_training_state(state.get("training_state", {}))  # older checkpoints: estimates rebuild
    run.optimizer.load_state_dict(state["optimizer"])
    run.start_epoch, run.global_step = int(state["epoch"]), int(state["global_step"])
    run.seed = int(state.get("seed", seed))  # a kept restart's own seed (trainables.restarts)
    run.history = list(state.get("history", []))
    set_rng_state(state["rng"], shuffle_gen, run.np_gen)
    return run


def train_epoch(run: Run, epoch: int) -> tuple[dict[str, Any], str]:
    """One pass over the shuffled train split (1-based ``epoch``): (train/* metrics, failure or "")."""
    cfg, model, data = run.cfg, run.model, run.train_data
    t0 = time.perf_counter()
    lr = float(lr_at(cfg, epoch - 1))
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    metrics: dict[str, Any] = dict(model.on_epoch_start(epoch - 1, run.train_batches, run.seed))
    model.train()
    bs = int(cfg["batch_size"])
    perm = torch.randperm(data.n, generator=run.shuffle_gen)
    n_batches = data.n // bs + (1 if data.n % bs > 1 else 0)  # a batch of 1 breaks BatchNorm
    sums: dict[str, float] = {}
    n_seen = 0
    clip = float(cfg["grad_clip"]) if cfg["grad_clip"] > 0 else float("inf")
    for step in range(n_batches):
        batch = views(run, data, perm[step * bs:(step + 1) * bs])
        with run.autocast:
            total, terms = model.training_step(batch, (epoch - 1) + step / max(1, n_batches))
        values = {"loss": float(total.detach()), **{k: float(t.detach()) for k, t in terms.items()}}
        run.optimizer.zero_grad(set_to_none=True)
        bad = next((k for k, v in values.items() if k != "loss" and not math.isfinite(v)), None)
        if bad is None and not math.isfinite(values["loss"]):
            bad = "loss"
        if bad is None:
            total.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            if not math.isfinite(gnorm):
                return metrics, f"non-finite gradient gradient norm at epoch {epoch}, step {step + 1}"
        else:
            return metrics, f"non-finite loss term {bad} at epoch {epoch}, step {step + 1}"
        run.optimizer.step()
        run.global_step += 1
        nb = batch.x.shape[0]
        n_seen += nb
        for k, v in {**values, "grad_norm": gnorm}.items():
            sums[k] = sums.get(k, 0.0) + v * nb
    metrics.update({f"train/{k}": s / max(1, n_seen) for k, s in sums.items()})
    metrics["train/lr"] = lr
    metrics.update(model.step_logs(epoch - 1 + (n_batches - 1) / max(1, n_batches)))
    metrics["train/epoch_time_s"] = time.perf_counter() - t0
    metrics["train/samples_per_s"] = n_seen / max(1e-9, metrics["train/epoch_time_s"])
    return metrics, ""


def views(run: Run, data: SplitData, idx: torch.Tensor) -> Batch:
    """The batch of train indices ``idx`` with its view: a drawn neighbour (``neighbours``) or the
    clip itself, augmented when ``augment`` is set; no view when neither is."""
    batch = data.batch(idx)
    if run.neighbours is not None:
        other = data.batch(run.neighbours.draw(idx, run.shuffle_gen))
        batch = batch.with_view(other.x, other.mask)
    if run.augmenter is not None:
        source = batch.view if batch.view is not None else batch
        batch = batch.with_view(*run.augmenter(source.x, source.mask))
    return batch


def before_evaluation(run: Run) -> None:
    if run.cfg["bn_reestimate"]:
        run.model.reestimate_batchnorm(run.train_batches)


def run_epoch(run: Run, epoch: int, val_data: SplitData, va_tab) -> tuple[dict[str, Any], str]:
    """Train ``epoch`` (1-based), evaluate on the validation split and append to the history:
    (metrics, failure or "")."""
    metrics, failure = train_epoch(run, epoch)
    if failure:
        return metrics, failure
    metrics = {"epoch": epoch, **metrics}
    t1 = time.perf_counter()
    before_evaluation(run)
    metrics.update(evaluate(run.model, val_data, va_tab.labels, run.cfg, "val/", run.augmenter)[0])
    metrics["val/time_s"] = time.perf_counter() - t1
    run.history.append(dict(metrics))
    return metrics, ""
