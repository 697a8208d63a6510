"""Training the candidates of a run with ``restarts`` R > 1 (:mod:`trainables.restarts` says what they
are and how one is chosen, or how they vote), resumably.

:func:`train_candidates` trains candidate r = 0 .. R-1 from seed ``restart_seed(seed, r)`` for
``restart_epochs`` epochs, scores it (silhouette on the train split, no labels) and keeps the best
separated one, or with ``restart_combine="vote"`` every one that did not diverge, then lets them vote.

What has been done is a checkpoint's ``restart_progress`` (:func:`progress_of`), written every
``checkpoint_every`` epochs of a candidate and at the end of every candidate::

    {"done": [{"index": r, "seed": s, "score": silhouette (NaN: none), "failure": "" or why,
               "state": the candidate's run state at its end (kept only where it can still be
                        used: the best so far, every finished candidate of a vote) or None,
               "probs": its train-split probabilities [N, K] (a vote's candidates) or None}, ...],
     "current": the run state of the candidate in training, or None,
     "chosen": True once the candidates have been chosen / have voted}

so a run killed or stopped among its candidates goes on from the last one written, with the same
result as an uninterrupted run (on CPU), and a finished vote resumes as itself. The checkpoint's
top-level run state is that of the best separated candidate so far (or of the one in training
before any has finished), so ``trainables.predict`` reads it like any other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from trainables.evaluation import evaluate, predict_table
from trainables.restarts import (Candidate, VotingEnsemble, choose, most_agreeing, restart_epochs, restart_metrics,
                                 restart_seed, separation, vote_maps)
from trainables.run import Run, run_epoch, setup_run

__all__ = ["PROGRESS_KEY", "Outcome", "train_candidates", "progress_of"]

PROGRESS_KEY = "restart_progress"


@dataclass
class Outcome:
    """What :func:`train_candidates` leaves: the run to report (the kept candidate, or the vote), its
    last good state (what a checkpoint holds), the failure ("" if none), ``interrupted`` (a stop came
    before every candidate was trained: nothing was chosen yet) and ``reported`` (the run was chosen
    before a resume, so its epochs have been reported already)."""

    run: Run
    last_good: dict
    failure: str
    interrupted: bool
    reported: bool


def progress_of(state: dict | None) -> dict | None:
    """A loaded checkpoint's ``restart_progress`` (None: a run without restarts, or one after its
    choice of the best candidate, which resumes as a plain run)."""
    return None if state is None else state.get(PROGRESS_KEY)


def _separation(run: Run) -> tuple[float, np.ndarray]:
    """The restart score of a run: silhouette of its clusters on its reported representation over the
    train split (trainables.restarts.separation; no labels), and its probabilities there [N, K] (what
    a vote maps)."""
    pred = predict_table(run.model, run.train_data, run.cfg, run.augmenter)
    rep = pred[type(run.model).reported_representation]
    score = separation(rep, pred["cluster"], sample_size=int(run.cfg["silhouette_sample"]) or None,
                       seed=int(run.cfg["seed"]))
    return score, pred["probs"]


class _Progress:
    """The candidates done so far (their :class:`Candidate`, kept states and probabilities)."""

    def __init__(self, cfg, saved: dict | None):
        self.vote = cfg["restart_combine"] == "vote"
        saved = saved or {"done": [], "current": None}
        self.done = [dict(d) for d in saved["done"]]
        self.current = saved.get("current")
        self.chosen = bool(saved.get("chosen", False))
        self.kept: int | None = None
        for i in range(len(self.done)):
            self._keep(i)

    def candidate(self, i: int) -> Candidate:
        d = self.done[i]
        return Candidate(int(d["index"]), int(d["seed"]), float(d["score"]), str(d["failure"]))

    def candidates(self) -> list[Candidate]:
        return [self.candidate(i) for i in range(len(self.done))]

    def _keep(self, i: int) -> None:
        """Candidate ``i`` becomes the kept one where it is the first or better separated (choose)."""
        new = self.candidate(i)
        if self.kept is None or choose([self.candidate(self.kept), new]) is new:
            self.kept = i

    def add(self, cand: Candidate, last_good: dict, probs) -> None:
        self.done.append({"index": cand.index, "seed": cand.seed, "score": cand.score, "failure": cand.failure,
                          "state": last_good, "probs": None if probs is None else torch.as_tensor(probs)})
        self.current = None
        self._keep(len(self.done) - 1)
        for i, d in enumerate(self.done):  # states that can still be used: the kept one, a vote's members
            if i != self.kept and not (self.vote and not d["failure"]):
                d["state"] = None

    def state(self, i: int) -> dict:
        """The kept state of finished candidate ``i`` (None where it can no longer be used)."""
        return self.done[i]["state"]

    def checkpoint(self, top: dict) -> dict:
        """The checkpoint state: ``top`` (a run state) with the progress beside it."""
        return {**top, PROGRESS_KEY: {"done": self.done, "current": self.current, "chosen": self.chosen}}


def _train_one(run: Run, upto: int, val_data, va_tab, should_stop, on_saved) -> tuple[dict, str, bool]:
    """Train ``run`` from its start epoch to ``upto``: (last good state, failure or "", stopped);
    ``on_saved(last_good, epoch)`` after every epoch."""
    last_good = run.snapshot(run.start_epoch)
    for epoch in range(run.start_epoch + 1, upto + 1):
        failure = run_epoch(run, epoch, val_data, va_tab)[1]
        if failure:
            return last_good, failure, False
        last_good = run.snapshot(epoch)
        on_saved(last_good, epoch)
        if epoch < upto and should_stop is not None and should_stop():
            return last_good, "", True
    return last_good, "", False


def train_candidates(cfg, table, device, use_bf16, val_data, va_tab, should_stop, *,
                     saved: dict | None = None, identity: dict | None = None,
                     save: Callable[[dict], Any] | None = None) -> Outcome:
    """Train the ``restarts`` candidates (module docstring), going on from ``saved`` (a checkpoint's
    ``restart_progress``; ``identity``: that checkpoint's ``config`` and ``meta``, which every state
    restored is checked against); ``save(state)`` writes a checkpoint (None: none written). With
    ``restart_combine="vote"`` the run's model is the :class:`~trainables.restarts.VotingEnsemble` of the
    candidates that did not diverge; where every candidate diverged, the first one with its failure."""
    upto, every, total = restart_epochs(cfg), int(cfg["checkpoint_every"]), int(cfg["restarts"])
    prog, identity = _Progress(cfg, saved), identity or {}
    runs: dict[int, Run] = {}  # the finished candidates whose state is kept (prog.state), restored or trained

    def restore(state, seed) -> Run:
        return setup_run(cfg, table, device, use_bf16, {**state, **identity}, seed=seed)

    for i, d in enumerate(prog.done):
        if d["state"] is not None:
            runs[i] = restore(d["state"], int(d["seed"]))

    def write(top):
        if save is not None and every > 0:
            save(prog.checkpoint(top))

    def interrupted(run: Run, last_good: dict) -> Outcome:
        """A stop among the candidates: the best so far (or the one in training) is reported, the
        checkpoint keeps the progress, nothing is chosen."""
        if prog.kept is not None:
            run, last_good = runs[prog.kept], prog.state(prog.kept)
        return Outcome(run, prog.checkpoint(last_good), "", True, False)

    for r in range(len(prog.done), total):
        seed = restart_seed(int(cfg["seed"]), r)
        run = setup_run(cfg, table, device, use_bf16, None, seed=seed) if prog.current is None \
            else restore(prog.current, seed)

        def on_saved(last_good, epoch):
            prog.current = last_good
            if epoch % max(1, every) == 0:
                write(prog.state(prog.kept) if prog.kept is not None else last_good)

        last_good, failure, stopped = _train_one(run, upto, val_data, va_tab, should_stop, on_saved)
        if stopped:
            return interrupted(run, last_good)
        score, probs = (math.nan, None) if failure else _separation(run)
        prog.add(Candidate(r, run.seed, score, failure), last_good, probs if prog.vote else None)
        runs[len(prog.done) - 1] = run
        runs = {i: v for i, v in runs.items() if prog.state(i) is not None}
        write(prog.state(prog.kept))
        if r < total - 1 and should_stop is not None and should_stop():
            return interrupted(run, last_good)
    return _choose(prog, runs, val_data, va_tab)


def _choose(prog: _Progress, runs, val_data, va_tab) -> Outcome:
    """The kept candidate, or the vote of the finished ones, with the choice in its metrics."""
    reported, prog.chosen = prog.chosen, True
    members = [i for i, d in enumerate(prog.done) if not d["failure"]]
    candidates = prog.candidates()
    if prog.vote and len(members) > 1:
        run, last_good, ref = _vote(prog, runs, members, val_data, va_tab)
        cand = prog.candidate(ref)
    else:
        run, last_good = runs[prog.kept], prog.state(prog.kept)
        cand = prog.candidate(prog.kept)
    if choose(candidates) is not None:
        run.summary = {**restart_metrics(candidates, cand), **run.summary}
        run.history[-1].update(run.summary)
    if not prog.vote:  # the best candidate goes on as a plain run: its checkpoints are plain run states
        return Outcome(run, last_good, cand.failure, False, reported)
    # a vote's checkpoint (written by the loop once its epochs are reported) keeps its members: it resumes as itself
    return Outcome(run, prog.checkpoint(last_good), cand.failure, False, reported)


def _vote(prog: _Progress, runs, members, val_data, va_tab) -> tuple[Run, dict, int]:
    """The voting ensemble of the finished candidates ``members`` (indices into ``prog.done``): the most
    agreeing candidate's run, its model replaced by the ensemble, whose validation metrics become the
    run's (``summary``); its state with the ensemble's weights as its model; the reference's index."""
    from trainables.checkpoint import clone_tree

    probs = [prog.done[i]["probs"].numpy() for i in members]
    ref = most_agreeing([p.argmax(axis=1) for p in probs])
    ensemble = VotingEnsemble([runs[i].model for i in members], vote_maps(probs, ref), ref)
    run, last_good = runs[members[ref]], prog.state(members[ref])
    run.model = ensemble
    run.summary = evaluate(ensemble, val_data, va_tab.labels, run.cfg, "val/", run.augmenter)[0]
    return run, {**last_good, "model": clone_tree(ensemble.state_dict())}, members[ref]
