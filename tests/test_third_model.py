"""A third model, defined and registered in this file alone, goes through everything the two papers'
models do: the model contract, the training loop, a study (real Ray, Optuna and MLflow, its trials in
Ray workers) and the analysis (the study's report, a replication's Table I). Nothing outside this file
names it: what it owns (its config key and defaults, loss terms, logged names, representations, the
one its tables report) it declares in its class; Ray's workers find it through
``trainables.models.PLUGINS_ENV``, which :func:`register_model` sets before Ray starts."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.study_helpers import TINY, build_features, mlflow_children, optuna_trials, uris
from tests.test_model_contract import ModelContract
from trainables.config_keys import Key
from trainables.models import ClusteringModel, register_model, unregister_model


class ToyModel(ClusteringModel):
    """A one-layer autoencoder of the centred input with a softmax cluster head on its hidden units; a
    batch-balance term keeps every cluster in use. Representations: ``h`` the hidden units, ``z`` a 3-d
    projection."""

    name = "toy"
    representations = ("h", "z")
    reported_representation = "z"  # not the first one present: the tables must be told
    config_keys = (Key("toy_width", 6, "hidden units of the toy model", positive=True, structural=True),)
    key_defaults = {"lr_start": 1e-2, "lr_end": 1e-3}
    loss_terms = ("recon", "balance")
    logged = ("balance_weight",)
    BALANCE = 1.0

    def __init__(self, n_freq: int, n_frames: int, n_clusters: int, width: int):
        super().__init__()
        self.n_clusters, self.width = int(n_clusters), int(width)
        self.encoder = nn.Linear(n_freq * n_frames, self.width)
        self.head = nn.Linear(self.width, self.n_clusters)
        self.project = nn.Linear(self.width, 3)
        self.decoder = nn.Linear(self.width, n_freq * n_frames)
        self.register_buffer("centre", torch.zeros(n_freq * n_frames))

    def on_train_start(self, batches, seed: int) -> None:
        flat = torch.cat([self._flat(b.x, b.mask) for b in batches()])
        self.centre.copy_(flat.mean(0))

    @classmethod
    def from_config(cls, cfg, n_freq, n_frames, to_linear=None, bounded: bool = True) -> "ToyModel":
        return cls(n_freq, n_frames, int(cfg["n_clusters"]), int(cfg["toy_width"]))

    @staticmethod
    def _flat(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return (x if mask is None else x * mask[:, None, :]).reshape(x.shape[0], -1).float()

    def _hidden(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        flat = self._flat(x, mask) - self.centre
        return torch.tanh(self.encoder(flat) * 10.0), flat

    def training_step(self, batch, epoch_float):
        h, flat = self._hidden(batch.x, batch.mask)
        recon = ((self.decoder(h) - flat) ** 2).mean()
        mean = torch.softmax(self.head(h), dim=1).mean(0)
        balance = (mean * torch.log(mean.clamp_min(1e-8))).sum() + math.log(self.n_clusters)
        return recon + self.BALANCE * balance, {"recon": recon, "balance": balance}

    def step_logs(self, epoch_float: float) -> dict[str, float]:
        return {"train/balance_weight": self.BALANCE}

    @torch.no_grad()
    def infer(self, x, mask=None):
        h, _ = self._hidden(x, mask)
        probs = torch.softmax(self.head(h), dim=1)
        return {"probs": probs, "cluster": probs.argmax(1), "h": h, "z": self.project(h)}

    def inference_parameters(self) -> int:
        return sum(p.numel() for m in (self.encoder, self.head, self.project) for p in m.parameters())

    def representation_sizes(self) -> dict[str, int]:
        return {"h": self.width, "z": 3}


def toy_space(trial, *, epochs: int = 1) -> dict:
    """The toy model: its width and the learning rate."""
    trial.suggest_int("toy_width", 4, 16, log=True)
    trial.suggest_float("lr_start", 5e-3, 5e-2, log=True)
    return {"model": "toy"}


@pytest.fixture(scope="module", autouse=True)
def toy():
    """Registered for this module only (the other test files parametrise over the built-in models)."""
    register_model(ToyModel)
    yield ToyModel
    unregister_model(ToyModel.name)


class TestToyContract(ModelContract):
    @pytest.fixture
    def model_name(self):
        return "toy"

    @pytest.fixture
    def encoder(self):
        return "conv"  # the toy builds its own network: the papers' models' encoder key does not apply


def test_the_registry_knows_what_the_toy_declares():
    from trainables.config import DEFAULTS, key_reference, resolve_config
    from trainables.metric_names import declared_metrics, reported_representation
    from trainables.train import build_parser

    cfg = resolve_config({"model": "toy"})
    assert cfg["toy_width"] == 6 and cfg["lr_start"] == 1e-2 and "toy_width" in DEFAULTS
    assert "toy_width" in key_reference() and "--toy-width" in build_parser().format_help()
    names = set(declared_metrics("toy"))
    assert {"train/recon", "train/balance", "train/balance_weight", "val/silhouette_h", "test/silhouette_z"} <= names
    assert reported_representation("toy") == "z"


def test_the_toy_trains_through_the_loop(tiny_table):
    from trainables.loop import train
    from trainables.metric_names import declared_metrics

    res = train({"model": "toy", "epochs": 2, "device": "cpu", "silhouette_sample": 200, "batch_size": 16},
                tiny_table)
    assert res.status == "complete" and res.epochs_done == 2
    reported = {k for h in res.history for k in h if "/" in k} | {k for k in res.metrics if "/" in k}
    assert reported <= set(declared_metrics("toy"))
    assert {"train/balance", "val/acc", "val/silhouette_z", "test/silhouette_h"} <= reported


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return build_features(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def local_ray(toy):
    """Started after the registration: its workers inherit trainables.models.PLUGINS_ENV."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_study_searches_it_and_the_analysis_reports_it(tmp_path, features, local_ray, monkeypatch):
    from analysis.report import build_report
    from analysis.tables import render_replication
    from study.engine import run_study
    from study.options import StudyOptions
    from study.replicate import replicate
    from study.spaces import SPACES

    monkeypatch.setitem(SPACES, "toy", toy_space)
    res = run_study(StudyOptions(space="toy", features=features, num_samples=2, epochs=1, max_concurrent=2,
                                 overrides=dict(TINY), seed=0, progress_every_s=1e9, study_name="toy-study",
                                 **uris(tmp_path)))
    trials = optuna_trials(res)
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    _, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    assert len(children) == 2
    for run in children:  # trained in Ray workers, which found the class
        assert run.data.tags["trial.status"] == "complete", run.data.tags.get("trial.reason")
        assert run.data.params["model"] == "toy" and "toy_width" in run.data.params
        assert {"val/silhouette_z", "val/silhouette_h", "train/balance"} <= set(run.data.metrics)

    report = build_report(["toy-study"], tracking_uri=res.tracking_uri, out_dir=tmp_path / "report")
    assert report.studies["toy-study"].n_runs == 2

    rep = replicate([children[0].info.run_id], 2, tracking_uri=res.tracking_uri, name="toy-rep", baselines=False)
    assert [o["status"] for o in rep.outcomes] == ["complete", "complete"]
    table = render_replication("toy-rep", res.tracking_uri, tmp_path / "rep").table
    assert list(table["Seeds"]) == ["2/2"]
    assert list(table["Repr."]) == ["z"]  # the class's reported representation, read from the runs' tag
