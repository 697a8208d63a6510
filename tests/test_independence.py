"""The clusters' independence of the speaker (trainables.independence, config speaker_independence)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from features.presets import PRESETS
from features.table import FeatureTable
from trainables.config import SPEAKER_DISJOINT, SPEAKER_NORMALISED, ConfigError, check_frontend, resolve_config
from trainables.independence import RunningGroupDependence, group_dependence
from trainables.models import MODELS, Batch

from tests.conftest import TINY_NET as TINY


def _log_onehot(idx, k, sharp=30.0):
    return torch.log_softmax(torch.nn.functional.one_hot(torch.as_tensor(idx), k).float() * sharp, 1)


def test_dependence_is_zero_when_speakers_use_the_clusters_alike_and_log_g_when_clusters_are_speakers():
    k, g = 6, 3
    speaker = torch.arange(12) % g
    digit = torch.arange(12) // g % k  # every speaker says the same digits: clusters independent of speakers
    assert float(group_dependence(_log_onehot(digit, k), speaker)) == pytest.approx(0.0, abs=1e-5)
    same = torch.log_softmax(torch.randn(1, k).expand(12, k), 1)  # one posterior for every clip
    assert float(group_dependence(same, speaker)) == pytest.approx(0.0, abs=1e-6)
    # clusters that are the speakers: as dependent as it gets
    assert float(group_dependence(_log_onehot(speaker, k), speaker)) == pytest.approx(math.log(g), abs=1e-4)
    # half the clips follow their speaker: in between
    mixed = torch.where(torch.arange(12) < 6, speaker, digit)
    assert 0.05 < float(group_dependence(_log_onehot(mixed, k), speaker)) < math.log(g) - 0.05
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        group_dependence(same, speaker[:5])


def test_running_estimate_gives_the_whole_data_gradient():
    """With momentum 0 the running joint is the batch's: the value is the batch's I(y; g) and the
    gradient with respect to the logits is exactly that of I(y; g) itself."""
    torch.manual_seed(0)
    logits = torch.randn(16, 5, requires_grad=True)
    speaker = torch.arange(16) % 4
    exact = group_dependence(torch.log_softmax(logits, 1), speaker)
    (grad_exact,) = torch.autograd.grad(exact, logits)
    loss, value = RunningGroupDependence(momentum=0.0)(torch.log_softmax(logits, 1), speaker)
    (grad_running,) = torch.autograd.grad(loss, logits)
    assert float(value) == pytest.approx(float(exact.detach()), rel=1e-5)
    assert torch.allclose(grad_running, grad_exact, atol=1e-6)


def test_running_estimate_follows_the_data_across_batches_and_pushes_clips_off_their_speakers_clusters():
    k = 4
    dep = RunningGroupDependence(momentum=0.5)
    speaker = torch.tensor([0, 0, 1, 1])
    follows = _log_onehot(speaker, k)  # cluster = speaker
    for _ in range(20):
        _, value = dep(follows, speaker)
    assert float(value) == pytest.approx(math.log(2), abs=1e-3)
    # new speakers appear: the joint grows, the estimate stays a mutual information
    _, value = dep(_log_onehot([2, 3], k), torch.tensor([2, 3]))
    assert dep.joint.shape == (k, 4) and 0 <= float(value) <= math.log(4) + 1e-6
    # a gradient step on the loss moves a clip's posterior away from its speaker's cluster
    logits = torch.zeros(2, k, requires_grad=True)
    loss, _ = RunningGroupDependence(momentum=0.0)(torch.log_softmax(logits + 3 * torch.eye(k)[:2], 1),
                                                   torch.tensor([0, 1]))
    loss.backward()
    assert logits.grad[0, 0] > 0 and logits.grad[1, 1] > 0  # descent lowers each clip's speaker cluster
    with pytest.raises(ValueError, match="momentum"):
        RunningGroupDependence(momentum=1.0)


def _speaker_batch(b=8):
    torch.manual_seed(2)
    x = torch.randn(b, 13, 10)
    return Batch(x, torch.ones(b, 10), torch.zeros(b, 4), group=torch.arange(b) % 2)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_speaker_independence_enters_the_loss_with_its_weight_and_needs_speakers(model):
    batch = _speaker_batch()

    def step(weight, b=batch):
        torch.manual_seed(0)
        m = MODELS[model](13, 10, n_clusters=3, d_z=2, bounded=False, speaker_independence=weight,
                          likelihood="gaussian_learned", **TINY)
        if model == "uvac":
            m.prior_fitted.fill_(True)  # its cluster posterior exists once the prior is fitted
        torch.manual_seed(1)
        return m.training_step(b, 0.0)

    t0, terms0 = step(0.0)
    t1, terms1 = step(4.0)
    assert "speaker_mi" not in terms0 and float(terms1["speaker_mi"]) >= 0
    # the first batch's running joint is its own, so the loss term equals the batch's dependence
    assert float(t1 - t0) == pytest.approx(4.0 * float(terms1["speaker_mi"]), rel=1e-3, abs=1e-5)
    t1.backward()  # gradients reach the networks through the cluster posterior
    # a batch without speakers (evaluation, warm-up passes) has no such term
    _, terms2 = step(4.0, Batch(batch.x, batch.mask, batch.stats))
    assert "speaker_mi" not in terms2
    with pytest.raises(ValueError, match="speaker_independence"):
        MODELS[model](13, 10, n_clusters=3, d_z=2, bounded=False, speaker_independence=-1.0, **TINY)


def test_speaker_independence_is_refused_where_the_front_end_does_not_use_speaker_ids():
    for model in MODELS:
        cfg = resolve_config({"model": model, "speaker_independence": 3.0}, preset=PRESETS["awe"])
        with pytest.raises(ConfigError, match="speaker_independence uses speaker ids.*front end 'awe'"):
            check_frontend(cfg, PRESETS["awe"])
        for per_speaker in ("awe_speaker", "awe_voice"):  # given or inferred speakers
            check_frontend(resolve_config({"model": model, "speaker_independence": 3.0},
                                          preset=PRESETS[per_speaker]), PRESETS[per_speaker])


@pytest.mark.parametrize("model", sorted(MODELS))
def test_recommended_on_a_speaker_normalised_front_end_takes_its_documented_values(model):
    for per_speaker in ("awe_speaker", "awe_voice"):
        cfg = resolve_config({"model": model}, preset=PRESETS[per_speaker])
        for k, v in SPEAKER_NORMALISED["recommended"].get(model, {}).items():
            assert cfg[k] == v, (per_speaker, k)
    assert resolve_config({"model": model}, preset=PRESETS["awe_raw"])["speaker_independence"] == 0.0
    given = resolve_config({"model": model, "speaker_independence": 1.5}, preset=PRESETS["awe_speaker"])
    assert given["speaker_independence"] == 1.5  # a value given explicitly wins
    assert resolve_config(cfg, preset=PRESETS["awe_speaker"]) == cfg  # resolving is idempotent


@pytest.mark.parametrize("model", sorted(MODELS))
def test_recommended_on_the_speaker_disjoint_split_takes_its_documented_values(model):
    """On a per-speaker front end the speaker-disjoint split (split_scheme group) adds SPEAKER_DISJOINT's
    values on top of SPEAKER_NORMALISED's; the random split and the other front ends do not."""
    layer = SPEAKER_DISJOINT["recommended"].get(model, {})
    for per_speaker in ("awe_speaker", "awe_voice"):
        random = resolve_config({"model": model}, preset=PRESETS[per_speaker])
        group = resolve_config({"model": model, "split_scheme": "group"}, preset=PRESETS[per_speaker])
        changed = {k for k in group if group[k] != random[k]}
        assert changed == {"split_scheme"} | {k for k, v in layer.items() if random[k] != v}, per_speaker
        assert all(group[k] == v for k, v in layer.items())
        assert resolve_config(group, preset=PRESETS[per_speaker]) == group  # idempotent
        given = resolve_config({"model": model, "split_scheme": "group", "consistency_weight": 2.5},
                               preset=PRESETS[per_speaker])
        assert given["consistency_weight"] == 2.5  # a value given explicitly wins
    plain = resolve_config({"model": model, "split_scheme": "group"}, preset=PRESETS["awe_raw"])
    base = resolve_config({"model": model}, preset=PRESETS["awe_raw"])
    assert {k for k in plain if plain[k] != base[k]} == {"split_scheme"}
    if model == "uvac":  # what the layer is for: UVAC's factorial prior, whose styles start from the speakers
        assert layer and random["prior_styles"] == 4 and group["prior_styles"] == 0
        # and the narrower networks its values were chosen with, where the random split takes the model's own
        assert (group["channels"], group["gru_hidden"]) == ("8,16,32,64", 64)
        assert (random["channels"], random["gru_hidden"]) == ("16,32,64,128", 128)


def _speaker_table(n_per=8):
    """Two speakers x three words, 13 x 10, per-speaker-normalised preset; speakers named by group."""
    rng = np.random.default_rng(0)
    words, speakers = np.repeat(np.arange(3), 2 * n_per), np.tile(np.repeat([0, 1], n_per), 3)
    n = len(words)
    spec = rng.normal(size=(3, 13, 10))[words] + 2.0 * speakers[:, None, None] + 0.1 * rng.normal(size=(n, 13, 10))
    split = np.array(["train", "train", "val", "test"] * (n // 4))
    return FeatureTable(ids=np.array([f"c{i:03d}" for i in range(n)]),
                        spectrogram=torch.tensor(spec, dtype=torch.float16), mask=torch.ones(n, 10),
                        norm_stats=torch.zeros(n, 4), labels=np.array(list("abc"))[words],
                        label_index=torch.tensor(words), classes=list("abc"),
                        groups=np.array(["ann", "bob"])[speakers], split=split, preset=PRESETS["awe_speaker"],
                        cache_key="k", dataset="fsdd")


def test_training_batches_carry_the_speakers_only_when_asked_and_the_term_is_logged(one_thread):
    from trainables.loop import train
    from trainables.split_data import SplitData

    table = _speaker_table()
    data = SplitData(table, torch.device("cpu"), True, groups=True)
    idx = torch.tensor([0, 5, 9, 30])
    b = data.batch(idx)
    assert b.group.tolist() == [int(table.groups[i] == "bob") for i in idx.tolist()]
    assert SplitData(table, torch.device("cpu"), True).batch(idx).group is None
    res = train({"model": "cat_uvac", "epochs": 1, "batch_size": 8, "speaker_independence": 2.0,
                 "channels": "2,3,4,4", "gru_hidden": 6, "checkpoint_every": 0}, table)
    assert res.status == "complete" and res.history[0]["train/speaker_mi"] >= 0


def test_fair_kmeans_finds_the_words_where_kmeans_finds_the_speakers():
    """Two speakers far apart, two words close together: K-means (K=2) splits the speakers,
    the speaker-independent K-means (the suite's awe_speaker_fair) the words."""
    from trainables.baselines import fit_kmeans
    from trainables.fair_kmeans import fit_fair_kmeans

    rng = np.random.default_rng(0)
    n = 200
    speaker, word = np.arange(n) % 2, (np.arange(n) // 2) % 2
    x = np.zeros((n, 6))
    x[:, 0] = 3.0 * speaker + rng.normal(scale=0.6, size=n)
    x[:, 1] = 2.0 * word + rng.normal(scale=0.6, size=n)
    x[:, 2:] = rng.normal(scale=0.6, size=(n, 4))

    def agreement(c, truth):  # accuracy under the best of the two label matchings
        return max(np.mean(c == truth), np.mean(c != truth))

    km = fit_kmeans(x, 2, seed=0).labels_
    assert agreement(km, speaker) > 0.95 and agreement(km, word) < 0.65
    fair = fit_fair_kmeans(x, np.array(["ann", "bob"])[speaker], 2, seed=0)
    c = fair.predict(x)
    assert agreement(c, word) > 0.9 and agreement(c, speaker) < 0.65
    assert fair.proba(x).shape == (n, 2) and np.allclose(fair.proba(x).sum(1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="speaker ids"):
        fit_fair_kmeans(x, speaker[:10], 2, seed=0)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_style_independence_uses_the_style_posterior_and_needs_a_style_factor(model):
    """No speaker ids: the style factor's q(s|x) stands in for the speaker (soft groups)."""
    b = _speaker_batch()
    batch = Batch(b.x, b.mask, b.stats)  # no group

    def step(weight):
        torch.manual_seed(0)
        m = MODELS[model](13, 10, n_clusters=3, d_z=2, bounded=False, style_clusters=2, style_independence=weight,
                          likelihood="gaussian_learned", **TINY)
        if model == "uvac":
            m.prior_fitted.fill_(True)
        torch.manual_seed(1)
        return m.training_step(batch, 0.0)

    t0, terms0 = step(0.0)
    t1, terms1 = step(2.0)
    assert "style_mi" not in terms0 and float(terms1["style_mi"]) >= 0 and "speaker_mi" not in terms1
    assert float(t1 - t0) == pytest.approx(2.0 * float(terms1["style_mi"]), rel=1e-3, abs=1e-5)
    with pytest.raises(ValueError, match="style_independence"):
        MODELS[model](13, 10, n_clusters=3, d_z=2, bounded=False, style_independence=1.0, **TINY)
    with pytest.raises(ConfigError, match="style_independence"):
        resolve_config({"model": model, "style_independence": 1.0, "style_clusters": 0})


def test_soft_groups_give_the_hard_groups_estimate_when_they_are_one_hot():
    torch.manual_seed(0)
    log_p = torch.log_softmax(torch.randn(12, 4), 1)
    speaker = torch.arange(12) % 3
    hard = RunningGroupDependence(momentum=0.0)(log_p, speaker)
    soft = RunningGroupDependence(momentum=0.0)(log_p, torch.nn.functional.one_hot(speaker, 3).float())
    assert torch.allclose(hard[0], soft[0]) and torch.allclose(hard[1], soft[1])


@pytest.mark.parametrize("model", ["cat_uvac", "uvac"])
def test_a_resumed_run_continues_with_the_running_speaker_dependence(one_thread, tmp_path, model):
    """The running joint P(cluster, speaker) is saved with the weights: stopped after epoch 1 of 3
    and resumed, every epoch equals the run trained straight through."""
    from trainables.checkpoint import load_checkpoint
    from trainables.loop import train

    table = _speaker_table()
    cfg = {"model": model, "epochs": 3, "batch_size": 8, "speaker_independence": 2.0, "channels": "2,3,4,4",
           "gru_hidden": 6, "checkpoint_every": 1, "device": "cpu", "seed": 3,
           "restarts": 1}  # one run: resumed epoch by epoch
    if model == "uvac":
        cfg["prior_warmup_epochs"] = 0  # the responsibilities (and the term) from the first batch
    straight = train(cfg, table, checkpoint_dir=str(tmp_path / "a"))
    ck = tmp_path / "b"
    assert train(cfg, table, checkpoint_dir=str(ck), on_epoch=lambda e, m, fn: e >= 1).epochs_done == 1
    joint = load_checkpoint(ck)["training_state"]["speaker_dependence"]
    assert joint.shape == (3, 2) and float(joint.sum()) == pytest.approx(1.0, abs=1e-5)
    resumed = train(cfg, table, checkpoint_dir=str(ck), resume_from=str(ck))
    times = ("train/epoch_time_s", "train/samples_per_s", "val/time_s")
    for h1, h2 in zip(straight.history, resumed.history, strict=True):
        assert h1.keys() == h2.keys()
        for k in set(h1) - set(times):
            assert h1[k] == h2[k] or (h1[k] != h1[k] and h2[k] != h2[k]), (k, h1[k], h2[k])  # NaN == NaN here


def test_training_state_that_the_model_does_not_track_is_refused():
    m = MODELS["cat_uvac"](13, 10, n_clusters=3, d_z=2, bounded=False, **TINY)
    assert m.training_state() == {}
    with pytest.raises(ValueError, match="'speaker_dependence' does not belong to this model"):
        m.load_training_state({"speaker_dependence": torch.ones(3, 2) / 6})


@pytest.mark.parametrize("model,start", [("uvac", {"prior_init": "aligned", "prior_warmup_epochs": 1}),
                                         ("cat_uvac", {"head_init": "aligned", "head_warmup_epochs": 1})])
def test_a_run_started_from_the_aligned_clusters_reads_the_speakers_and_fits_its_start(one_thread, model, start):
    """The aligned starts end to end: the run's batches carry the speakers (speaker_id_settings), the
    prior / the head is fitted from the per-speaker clusters after the warm-up, the run completes."""
    from trainables.loop import train

    table = _speaker_table()
    res = train({"model": model, "epochs": 2, "batch_size": 8, **start, "speaker_independence": 0.0,
                 "channels": "2,3,4,4", "gru_hidden": 6, "checkpoint_every": 0}, table)
    fitted = "train/prior_fitted_at" if model == "uvac" else "train/head_fitted_at"
    assert res.status == "complete" and res.history[1][fitted] == 1.0
