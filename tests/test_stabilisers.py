"""Each training stabiliser is honoured (config key -> behaviour), and the recipes resolve to
their documented values. Tiny tensors and the tiny synthetic cache; CPU, seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from trainables.config import DEFAULTS, RECIPES, ConfigError, resolve_config
from trainables.losses import reconstruction
from trainables.models import MODELS, Batch, CatUVAC, UVAC, build_model
from trainables.models.blocks import as_image
from trainables.models.cat_uvac import gumbel_softmax_fp32, marginal_kl_uniform
from trainables.reconstruction import LIKELIHOODS, Reconstruction

from tests.conftest import TINY_NET as TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(b=4, f=16, t=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, f, t, generator=g) ** 3  # sparse-ish, like linear magnitudes
    mask = torch.ones(b, t)
    mask[0, 10:] = 0
    x[0, :, 10:] = 0
    stats = torch.tensor([[0.1, 2.0, 0.0, 1.0]]).repeat(b, 1)
    return x, mask, stats


def _batches(table_data):
    x, mask, stats = table_data
    return lambda: iter([Batch(x[:2], mask[:2], stats[:2]), Batch(x[2:], mask[2:], stats[2:])])


# ------------------------------------------------------------------ likelihoods
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_every_likelihood_is_a_finite_masked_nll_with_gradients(likelihood):
    x, mask, stats = _data()
    rec = Reconstruction("euc", likelihood, n_freq=16)
    out = torch.zeros(4, 16, 16, requires_grad=True)
    value = rec(x, out, mask, stats)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert out.grad.abs().sum() > 0
    assert torch.all(out.grad[0, :, 10:] == 0), "padding frames must not receive gradient"
    if likelihood.startswith("gaussian_learned"):
        assert rec.log_var.grad is not None and rec.log_var.grad.abs().sum() > 0
        assert rec.log_var.shape == ((16,) if likelihood.endswith("freq") else (1,))


def test_likelihood_values():
    x, mask, stats = _data()
    o = torch.rand(4, 16, 16)
    keep = (mask > 0)[:, None, :].expand_as(x)
    gauss = Reconstruction("euc", "gaussian", 16)(x, o, mask, stats)
    assert torch.allclose(gauss, reconstruction(x, o, mask, "euc"))
    logits = torch.randn(4, 16, 16)
    bern = Reconstruction("euc", "bernoulli", 16)(x, logits, mask, stats)
    manual = torch.where(keep, F.binary_cross_entropy_with_logits(logits, x, reduction="none"), 0).sum((1, 2)).mean()
    assert torch.allclose(bern, manual)
    # a learned variance starts at the papers' 1/2: same as the fixed Gaussian up to 0.5 log(1/2) per real bin
    learned = Reconstruction("euc", "gaussian_learned", 16)(x, o, mask, stats)
    n_bins = keep.sum((1, 2)).float().mean()
    assert torch.allclose(learned, gauss + 0.5 * math.log(0.5) * n_bins, atol=1e-4)
    assert Reconstruction("euc", "bernoulli", 16).final_activation is None
    assert Reconstruction("euc", "gaussian_learned_freq", 16).final_activation == "sigmoid"


def test_learned_variance_moves_towards_the_residual_variance():
    torch.manual_seed(0)
    x, mask, stats = _data(b=8)
    o = x + 0.05 * torch.randn_like(x)  # residual sd 0.05, far below sqrt(1/2)
    rec = Reconstruction("euc", "gaussian_learned", 16)
    opt = torch.optim.Adam(rec.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        rec(x, o, mask, stats).backward()
        opt.step()
    resid = ((x - o)[(mask > 0)[:, None, :].expand_as(x)] ** 2).mean()
    assert abs(float(rec.log_var.detach()) - math.log(float(resid))) < 0.1


def test_likelihood_needs_the_euclidean_divergence():
    with pytest.raises(ConfigError, match="likelihood"):
        resolve_config({"divergence": "is", "likelihood": "bernoulli"})
    # the recipe's likelihood gives way to an explicit IS / KL divergence
    assert resolve_config({"divergence": "kl"})["likelihood"] == "gaussian"


# ------------------------------------------------------------------ decoder output bias
@pytest.mark.parametrize("divergence", ["euc", "is", "kl"])
def test_data_mean_output_bias(divergence):
    x, mask, stats = _data()

    def to_linear(x01, st):
        return x01 * st[:, 1, None, None] + st[:, 0, None, None]

    m = UVAC(16, 16, n_clusters=3, d_z=2, divergence=divergence, to_linear=to_linear, dec_bias_init="data_mean",
             likelihood="bernoulli" if divergence == "euc" else "gaussian", **TINY)
    m.on_train_start(_batches((x, mask, stats)), seed=0)
    bias = float(m.decoder.deconvs[-1].bias.detach())
    keep = (mask > 0)[:, None, :].expand_as(x)
    if divergence == "euc":
        assert torch.sigmoid(torch.tensor(bias)) == pytest.approx(float(x[keep].mean()), rel=1e-4)
    else:
        lin = to_linear(x, stats)
        target = (lin * lin if divergence == "is" else lin)[keep].mean()
        assert math.exp(bias) == pytest.approx(float(target), rel=1e-4)
    zero = UVAC(16, 16, n_clusters=3, d_z=2, **TINY)
    zero.on_train_start(_batches((x, mask, stats)), seed=0)
    assert float(zero.decoder.deconvs[-1].bias.detach()) == 0.0


# ------------------------------------------------------------------ GMM prior
def test_fitted_prior_equals_a_gaussian_mixture_on_the_same_latents():
    from sklearn.mixture import GaussianMixture

    torch.manual_seed(0)
    data = _data(b=40, seed=1)
    m = UVAC(16, 16, n_clusters=3, d_z=2, prior_init="fit", prior_warmup_epochs=2, hparams={"epochs": 10}, **TINY)
    before = {k: v.clone() for k, v in m.state_dict().items() if "prior" in k or "pi" in k}
    assert m.on_epoch_start(1, _batches(data), seed=5) == {}  # still warming up
    assert not bool(m.prior_fitted)
    assert all(torch.equal(before[k], m.state_dict()[k]) for k in before)
    mu, var = m.latent_posteriors(_batches(data))
    logs = m.on_epoch_start(2, _batches(data), seed=5)
    assert logs == {"train/prior_fitted_at": 2.0} and bool(m.prior_fitted)
    gm = GaussianMixture(3, covariance_type="diag", random_state=5, reg_covar=1e-4, max_iter=200).fit(mu)
    np.testing.assert_allclose(torch.softmax(m.pi_logits, 0).detach().numpy(), gm.weights_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m.prior_mu.detach().numpy(), gm.means_, rtol=1e-4, atol=1e-5)
    # variances: the mixture's, widened by the mean posterior variance of each component's clips
    resp = gm.predict_proba(mu)
    widened = gm.covariances_ + (resp.T @ var) / resp.sum(0)[:, None]
    np.testing.assert_allclose(m.prior_logvar.exp().detach().numpy(), widened, rtol=1e-4)
    assert (m.prior_logvar.exp().detach().numpy() > gm.covariances_).all()
    # fitted once: a later epoch does not refit
    assert m.on_epoch_start(3, _batches(data), seed=5) == {}


@pytest.mark.parametrize("styles", [0, 2])
def test_input_prior_starts_from_the_classical_mixture_on_the_inputs(styles):
    """prior_init input: after the warm-up each prior component holds the latent moments of the
    clips that the factorial mixture on the inputs gives it (three groups that differ in when their
    energy comes, not in any row's level or spread, which the styles take)."""
    from sklearn.metrics import adjusted_rand_score

    torch.manual_seed(0)
    _, _, stats = _data(b=60, seed=2)
    group = np.repeat(np.arange(3), 20)
    x = torch.rand(60, 16, 16, generator=torch.Generator().manual_seed(2)) * 0.1
    for g in range(3):
        x[group == g, :, 5 * g:5 * g + 5] += 0.8
    mask = torch.ones(60, 16)
    data = (x, mask, stats)
    m = UVAC(16, 16, n_clusters=3, d_z=2, prior_init="input", prior_warmup_epochs=1, prior_styles=styles,
             hparams={"epochs": 10}, **TINY)
    assert m.on_epoch_start(0, _batches(data), seed=3) == {} and not bool(m.prior_fitted)
    mu, var = m.latent_posteriors(_batches(data))
    resp = m.input_responsibilities(_batches(data), m.input_statistics(_batches(data)), seed=3)
    assert resp.shape == (60, 3 * max(1, styles))
    np.testing.assert_allclose(resp.sum(1), 1.0, rtol=1e-6)
    content = resp.reshape(60, 3, -1).sum(2).argmax(1)
    assert adjusted_rand_score(group, content) == 1.0  # the classical mixture finds the groups
    assert m.on_epoch_start(1, _batches(data), seed=3) == {"train/prior_fitted_at": 1.0}
    mass = resp.sum(0)
    np.testing.assert_allclose(torch.softmax(m.pi_logits, 0).detach().numpy(), mass / mass.sum(), rtol=1e-4,
                               atol=1e-6)
    means = (resp.T @ mu) / mass[:, None]
    np.testing.assert_allclose(m.prior_mu.detach().numpy(), means, rtol=1e-4, atol=1e-5)
    spread = np.maximum((resp.T @ mu ** 2) / mass[:, None] - means ** 2, 1e-4)
    np.testing.assert_allclose(m.prior_logvar.exp().detach().numpy(), spread + (resp.T @ var) / mass[:, None],
                               rtol=1e-3)
    assert m.on_epoch_start(2, _batches(data), seed=3) == {}  # fitted once


def _two_speakers(n=60):
    """Three words said by two speakers whose offset is larger than the words' differences (one
    K-means over both would split the speakers): (word [N], speaker [N], batches(with_groups=True))."""
    word, speaker = np.arange(n) % 3, (np.arange(n) // 3) % 2
    x = torch.rand(n, 16, 16, generator=torch.Generator().manual_seed(4)) * 0.1
    for w in range(3):
        x[word == w, :, 5 * w:5 * w + 5] += 0.5
    x[speaker == 1, :8, :] += 2.0  # the speaker's offset
    mask, stats = torch.ones(n, 16), torch.zeros(n, 4)
    group = torch.as_tensor(speaker, dtype=torch.int64)

    def batches(with_groups=True):
        return lambda: iter([Batch(x[i:i + 20], mask[i:i + 20], stats[i:i + 20],
                                   group=group[i:i + 20] if with_groups else None) for i in range(0, n, 20)])
    return word, speaker, batches


@pytest.mark.parametrize("styles", [0, 2])
def test_aligned_prior_starts_from_the_per_speaker_clusters_matched_across_speakers(styles):
    """prior_init aligned: the memberships are the classical aligned_kmeans clusters of the inputs,
    fitted with the speakers the batches carry."""
    from sklearn.metrics import adjusted_rand_score

    torch.manual_seed(0)
    n = 60
    word, speaker, batches = _two_speakers(n)
    m = UVAC(16, 16, n_clusters=3, d_z=2, prior_init="aligned", prior_warmup_epochs=1, prior_styles=styles,
             hparams={"epochs": 10}, **TINY)
    resp = m.aligned_responsibilities(batches(), seed=3)
    assert resp.shape == (n, 3 * max(1, styles)) and set(np.unique(resp)) == {0.0, 1.0}
    content = resp.reshape(n, 3, -1).sum(2).argmax(1)
    assert adjusted_rand_score(word, content) == 1.0  # the words, across both speakers
    if styles == 2:  # the style of a clip is its speaker
        assert adjusted_rand_score(speaker, resp.reshape(n, 3, 2).sum(1).argmax(1)) == 1.0
    mu, var = m.latent_posteriors(batches())
    assert m.on_epoch_start(1, batches(), seed=3) == {"train/prior_fitted_at": 1.0}
    mass = resp.sum(0)
    np.testing.assert_allclose(m.prior_mu.detach().numpy(), (resp.T @ mu) / mass[:, None], rtol=1e-4, atol=1e-5)
    fresh = UVAC(16, 16, n_clusters=3, d_z=2, prior_init="aligned", prior_warmup_epochs=1, **TINY)
    with pytest.raises(ValueError, match="needs the speaker ids"):
        fresh.on_epoch_start(1, batches(with_groups=False), seed=3)


def test_aligned_prior_uses_speaker_ids_so_only_on_a_front_end_normalised_per_speaker():
    from features.frontend import get_preset
    from trainables.config import check_frontend

    cfg = resolve_config({"model": "uvac", "prior_init": "aligned", "recipe": "recommended"},
                         preset=get_preset("awe_speaker"))
    assert UVAC.speaker_id_settings(cfg) == ("speaker_independence", "prior_init aligned")
    check_frontend(cfg, get_preset("awe_speaker"))
    with pytest.raises(ConfigError, match="prior_init aligned uses speaker ids"):
        check_frontend({**cfg, "speaker_independence": 0.0, "frontend": "awe"}, get_preset("awe"))
    assert not UVAC.speaker_id_settings(resolve_config({"model": "uvac", "prior_init": "fit"}))


def test_fitted_priors_declare_their_warmup():
    cfg = {"model": "uvac", "epochs": 20, "prior_warmup_epochs": 4}
    assert UVAC.warmup_epochs(resolve_config({**cfg, "prior_init": "paper"})) == 0
    assert UVAC.warmup_epochs(resolve_config({**cfg, "prior_init": "fit"})) == 5
    assert UVAC.warmup_epochs(resolve_config({**cfg, "prior_init": "input"})) == 5
    assert UVAC.warmup_epochs(resolve_config({**cfg, "prior_init": "aligned"})) == 5


def test_prior_warmup_uses_a_standard_normal_then_eq_11():
    from trainables.losses import gaussian_kl, gmm_kl

    torch.manual_seed(0)
    x, mask, stats = _data()
    m = UVAC(16, 16, n_clusters=3, d_z=2, prior_init="fit", **TINY).train()
    mu, logvar = torch.randn(4, 2), torch.randn(4, 2)
    assert torch.allclose(m.kl_term(mu, logvar), gaussian_kl(mu, logvar))
    m.prior_fitted.fill_(True)
    assert torch.allclose(m.kl_term(mu, logvar), gmm_kl(mu, logvar, m.pi_logits, m.prior_mu, m.prior_logvar))
    assert bool(UVAC(16, 16, **TINY).prior_fitted), "the paper's prior is used from the first step"


def test_latent_posteriors_leave_batchnorm_statistics_and_the_random_state_alone():
    m = UVAC(16, 16, n_clusters=3, d_z=2, **TINY).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    rng = torch.get_rng_state()
    mu, var = m.latent_posteriors(_batches(_data()))
    assert mu.shape == var.shape == (4, 2) and (var > 0).all()
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert not m.training



# ------------------------------------------------------------------ categorical UVAC's head
def test_fitted_head_is_the_nearest_centroid_rule_of_kmeans_on_encoder_h():
    from sklearn.cluster import KMeans

    torch.manual_seed(0)
    data = _data(b=40, seed=1)
    m = CatUVAC(16, 16, n_clusters=3, d_z=2, head_init="fit", head_warmup_epochs=2, hparams={"epochs": 10}, **TINY)
    before = m.to_logits.weight.detach().clone()
    assert m.on_epoch_start(1, _batches(data), seed=5) == {}  # still warming up
    assert not bool(m.head_fitted) and torch.equal(before, m.to_logits.weight)
    running = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    h = m.head_features(_batches(data))
    assert h.shape == (40, m.enc_y.out_features)
    assert all(torch.equal(running[k], m.state_dict()[k]) for k in running), "BatchNorm statistics moved"
    assert m.on_epoch_start(2, _batches(data), seed=5) == {"train/head_fitted_at": 2.0} and bool(m.head_fitted)
    # the head's argmax is the K-means clustering of the standardised features, cluster for cluster
    hz = (h - h.mean(0)) / (h.std(0) + 1e-6)
    km = KMeans(3, n_init=10, random_state=5).fit(hz)
    with torch.no_grad():
        logits = m.to_logits(torch.as_tensor(h, dtype=torch.float32))
    np.testing.assert_array_equal(logits.argmax(1).numpy(), km.labels_)
    assert m.on_epoch_start(3, _batches(data), seed=5) == {}, "fitted once: a later epoch does not refit"
    random_head = CatUVAC(16, 16, n_clusters=3, d_z=2, **TINY)
    assert "head_fitted" not in random_head.state_dict() and random_head.on_epoch_start(5, _batches(data), 0) == {}


def test_aligned_head_is_a_classifier_of_the_per_speaker_clusters_matched_across_speakers():
    """head_init aligned: at the head's fitting epoch q(y|x)'s head becomes a linear classifier of h's
    features trained on the classical aligned_kmeans clusters of the inputs (the words, across both
    speakers), and reproduces them."""
    from sklearn.metrics import adjusted_rand_score

    torch.manual_seed(0)
    word, _, batches = _two_speakers()
    m = CatUVAC(16, 16, n_clusters=3, d_z=2, head_init="aligned", head_warmup_epochs=1, hparams={"epochs": 10},
                **TINY)
    labels, _ = m.aligned_input_clusters(batches(), seed=5)
    assert adjusted_rand_score(word, labels) == 1.0
    h = m.head_features(batches())
    before = m.to_logits.weight.detach().clone()
    assert m.on_epoch_start(1, batches(), seed=5) == {"train/head_fitted_at": 1.0} and bool(m.head_fitted)
    assert not torch.equal(before, m.to_logits.weight)
    with torch.no_grad():
        logits = m.to_logits(torch.as_tensor(h, dtype=torch.float32))
    agree = np.mean(logits.argmax(1).numpy() == labels)
    # better than the nearest-centroid rule of the same clusters in h (a tiny untrained encoder here)
    hz = (h - h.mean(0)) / (h.std(0) + 1e-6)
    centres = np.stack([hz[labels == k].mean(0) for k in range(3)])
    nearest = ((hz[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    assert agree >= 0.8 and agree >= np.mean(nearest == labels)
    assert m.on_epoch_start(2, batches(), seed=5) == {}, "fitted once"
    with pytest.raises(ValueError, match="speaker ids"):
        CatUVAC(16, 16, n_clusters=3, d_z=2, head_init="aligned", head_warmup_epochs=1, hparams={"epochs": 10},
                **TINY).on_epoch_start(1, batches(with_groups=False), seed=5)
    from features.frontend import get_preset
    from trainables.config import check_frontend
    cfg = resolve_config({"model": "cat_uvac", "head_init": "aligned", "speaker_independence": 0.0},
                         preset=get_preset("awe_speaker"))
    assert CatUVAC.speaker_id_settings(cfg) == ("head_init aligned",)
    with pytest.raises(ConfigError, match="head_init aligned uses speaker ids"):  # names what reads them
        check_frontend({**cfg, "frontend": "awe"}, get_preset("awe"))


def test_classifier_head_reproduces_given_clusters_on_the_raw_features():
    from trainables.models.centroids import classifier_head

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    f = rng.normal(size=(120, 5)) * 0.3 + np.eye(4, 5)[labels] * 3.0 + 10.0  # offset: the folding matters
    w, b = classifier_head(f, labels, 5, seed=0)  # cluster 4 holds no row
    assert w.shape == (5, 5) and b.shape == (5,)
    logits = f @ w.T + b
    assert (logits.argmax(1) == labels).all() and (logits[:, 4] < logits.max(1)).all()
    w2, b2 = classifier_head(f[labels < 2], labels[labels < 2], 2, seed=0)  # binary
    assert ((f[labels < 2] @ w2.T + b2).argmax(1) == labels[labels < 2]).all()
    with pytest.raises(ValueError, match="at least 2 clusters"):
        classifier_head(f, np.zeros(120, dtype=int), 3, seed=0)


def test_head_init_declares_its_warmup_and_rejects_an_unknown_choice():
    from trainables.models import warmup_epochs

    cfg = resolve_config({"model": "cat_uvac", "epochs": 30, "head_init": "fit", "head_warmup_epochs": 5})
    assert warmup_epochs(cfg) == 6  # fitted before epoch 6 (1-based) and used in it
    assert warmup_epochs({**cfg, "epochs": 3}) == 3
    assert warmup_epochs({**cfg, "head_init": "random"}) == 0
    with pytest.raises(ConfigError, match="head_init"):
        resolve_config({"model": "cat_uvac", "head_init": "kmeans"})


# ------------------------------------------------------------------ categorical UVAC terms
def test_marginal_entropy_term_rises_when_one_category_dominates():
    k = 5
    balanced = torch.eye(k).repeat(4, 1) * 6.0  # every category used equally
    assert float(marginal_kl_uniform(balanced)) == pytest.approx(0.0, abs=1e-3)
    skewed = balanced.clone()
    skewed[:12] = torch.tensor([6.0, 0, 0, 0, 0])
    one = torch.tensor([[20.0, 0, 0, 0, 0]]).repeat(20, 1)
    vals = [float(marginal_kl_uniform(t)) for t in (balanced, skewed, one)]
    assert vals[0] < vals[1] < vals[2]
    assert vals[2] == pytest.approx(math.log(k), abs=1e-3)


def _cat_step(**options):
    """(total, terms) of one training step of a seeded tiny CatUVAC with ``options``."""
    x, mask, stats = _data()
    torch.manual_seed(0)
    m = CatUVAC(16, 16, n_clusters=3, d_z=2, **options, **TINY).train()
    torch.manual_seed(1)
    return m.training_step(Batch(x, mask, stats), 0.0)


def test_marginal_entropy_weight_enters_the_loss():
    t0, terms0 = _cat_step(marginal_entropy_weight=0.0)
    t3, terms3 = _cat_step(marginal_entropy_weight=3.0)
    assert "kl_ybar" not in terms0 and "kl_ybar" in terms3
    assert torch.allclose(t3, t0 + 3.0 * terms3["kl_ybar"], atol=1e-5)


def test_kl_z_weight_scales_only_kl_z():
    t1, terms = _cat_step(kl_z_weight=1.0, hparams={"lam": 1.0})
    t4, _ = _cat_step(kl_z_weight=4.0, hparams={"lam": 1.0})
    assert torch.allclose(t4, t1 + 3.0 * terms["kl_z"], atol=1e-4)


def test_hard_gumbel_softmax_is_one_hot_forward_with_gradients():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    y = gumbel_softmax_fp32(logits, 0.7, hard=True)
    assert torch.equal(y.detach().sum(1), torch.ones(6))
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    (y * torch.arange(4.0)).sum().backward()
    assert logits.grad.abs().sum() > 0
    m = CatUVAC(16, 16, n_clusters=3, d_z=2, gumbel_hard=True, **TINY).train()
    assert set(m(torch.rand(2, 16, 16), tau=0.5)["y"].detach().unique().tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------ BatchNorm re-estimation
@pytest.mark.parametrize("model", sorted(MODELS))
def test_batchnorm_reestimation_changes_running_stats_not_weights(model):
    torch.manual_seed(0)
    m = MODELS[model](16, 16, n_clusters=3, d_z=2, **TINY).train()
    params = {k: p.detach().clone() for k, p in m.named_parameters()}
    bn_before = {k: v.clone() for k, v in m.named_buffers() if "running" in k}
    n = m.reestimate_batchnorm(_batches(_data(b=8)))
    assert n > 0
    assert all(torch.equal(params[k], p) for k, p in m.named_parameters())
    changed = [k for k, v in m.named_buffers() if "running" in k and not torch.equal(bn_before[k], v)]
    assert changed, "running statistics were not re-estimated"
    assert m.training, "the model's mode is restored"
    assert all(b.momentum == 0.1 for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d))


def test_batchnorm_reestimation_makes_eval_agree_with_batch_statistics():
    """After re-estimation, evaluation-mode encodings equal those computed with the data's own statistics."""
    torch.manual_seed(0)
    x, mask, stats = _data(b=16)
    m = UVAC(16, 16, n_clusters=3, d_z=2, **TINY)
    for b in m.modules():  # drifted statistics, as early in training
        if isinstance(b, torch.nn.BatchNorm2d):
            b.running_mean.fill_(3.0)
            b.running_var.fill_(9.0)
    whole = lambda: iter([Batch(x, mask, stats)])  # noqa: E731
    m.train()
    with torch.no_grad():
        batch_mu = m.encode(x)[0]
    m.eval()
    with torch.no_grad():
        drifted = m.encode(x)[0]
    m.reestimate_batchnorm(whole)
    m.eval()
    with torch.no_grad():
        fixed = m.encode(x)[0]
    # running variances are unbiased (n / (n - 1)) where training normalises with the biased one,
    # so agreement is close, not exact, on 16 clips
    err_fixed, err_drifted = float((fixed - batch_mu).abs().max()), float((drifted - batch_mu).abs().max())
    assert err_fixed < 0.05 and err_fixed < 0.1 * err_drifted, (err_fixed, err_drifted)



@pytest.mark.parametrize("model", [UVAC, CatUVAC])
def test_batch_statistics_encodes_as_training_and_leaves_running_statistics_and_mode_alone(model):
    """Inside batch_statistics() BatchNorm normalises with the batch's own statistics (the drifted
    running ones give other encodings); afterwards every BatchNorm buffer and the mode are as before."""
    torch.manual_seed(0)
    x, mask, stats = _data(b=16)
    m = model(16, 16, n_clusters=3, d_z=2, **TINY)
    for b in m.modules():
        if isinstance(b, torch.nn.BatchNorm2d):
            b.running_mean.fill_(3.0)
            b.running_var.fill_(9.0)
    before = {k: v.clone() for k, v in m.named_buffers()}
    encoder, img = (m.encoder if model is UVAC else m.enc_y), as_image(x, 16, 16)[0]  # the conv + GRU encoder
    m.eval()
    with torch.no_grad():
        drifted = encoder(img, mask)
        with m.batch_statistics():
            assert m.training
            inside = encoder(img, mask)
    assert not m.training
    assert not torch.allclose(inside, drifted, atol=1e-3)
    assert all(torch.equal(v, before[k]) for k, v in m.named_buffers())


# ------------------------------------------------------------------ GRU pooling
def test_mean_pool_averages_over_real_steps_only():
    from trainables.models.blocks import ConvEncoder

    torch.manual_seed(0)
    enc = ConvEncoder(1, 16, 32, channels=(2, 2), gru_hidden=5, pool="mean").eval()
    mask = torch.ones(2, 32)
    mask[0, 12:] = 0  # 12 real frames: the receptive fields of conv steps 0..5 of 8 reach them
    steps = enc.step_mask(mask)
    assert steps.shape == (2, 8)
    assert steps[0].tolist() == [1, 1, 1, 1, 1, 1, 0, 0] and steps[1].sum() == 8
    x = torch.rand(2, 1, 16, 32)
    h = enc.convs(x)
    seq = h.permute(0, 3, 1, 2).reshape(2, 8, -1)
    out, _ = enc.gru(seq)
    got = enc(x, mask)
    assert torch.allclose(got[0], out[0, :6].mean(0), atol=1e-6)
    assert torch.allclose(got[1], out[1].mean(0), atol=1e-6)
    last = ConvEncoder(1, 16, 32, channels=(2, 2), gru_hidden=5, pool="last").eval()
    last.load_state_dict(enc.state_dict())
    assert torch.allclose(last(x, mask), out[:, -1], atol=1e-6)


# ------------------------------------------------------------------ recipes
STABILISERS = ("likelihood", "dec_bias_init", "prior_init", "marginal_entropy_weight", "kl_z_weight",
               "gumbel_hard", "bn_reestimate", "pool")


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_recipes_resolve_to_their_documented_values(recipe, model):
    cfg = resolve_config({"model": model, "recipe": recipe})
    assert cfg["recipe"] == recipe
    for key, value in RECIPES[recipe][model].items():
        assert cfg[key] == value, key
    if recipe.startswith("paper"):  # every stabiliser off: the papers' settings
        for key in STABILISERS:
            assert cfg[key] == DEFAULTS[key], key
    # the resolved config builds, and an explicit value always wins over the recipe
    assert resolve_config({"model": model, "recipe": recipe, "pool": "last"})["pool"] == "last"
    build_model({**cfg, "n_clusters": 3, "channels": "2,2,2,2", "gru_hidden": 4}, 16, 16, preset=None)


def test_recipe_defaults_and_learning_rates():
    assert DEFAULTS["recipe"] == "recommended"
    assert resolve_config({})["recipe"] == "recommended"
    paper = resolve_config({"model": "uvac", "recipe": "paper"})
    assert (paper["lr_start"], paper["lr_end"]) == (5e-4, 5e-5)  # the categorical paper's III-D, both models
    fast = resolve_config({"model": "uvac", "recipe": "paper-lr5e-3"})
    assert (fast["lr_start"], fast["lr_end"]) == (5e-3, 5e-4)  # the UVAC paper's own
    assert resolve_config({"model": "cat_uvac", "recipe": "paper"}, dataset="urbansound8k")["lam"] == 2.0
    # the papers train 500 epochs; recommended as long as it was measured (RECIPE_EPOCHS), unless given
    assert paper["epochs"] == DEFAULTS["epochs"] == 500
    for model, epochs in (("uvac", 30), ("cat_uvac", 60)):
        assert resolve_config({"model": model})["epochs"] == epochs
        assert resolve_config({"model": model, "epochs": 7})["epochs"] == 7
    assert resolve_config({"model": "kmeans"})["epochs"] == 500  # a baseline has no recipe length
    with pytest.raises(ConfigError, match="recipe"):
        resolve_config({"recipe": "bogus"})


@pytest.mark.parametrize("model", sorted(MODELS))
def test_recommended_resolves_per_front_end_kind_as_documented(model):
    """On a real-valued front end the recipe's REAL_VALUED values apply (the study's choice), on a
    [0, 1] one the recipe's own; a value given explicitly always wins; every recipe names the
    front end it is measured with, and that front end trains the recipe without a config error."""
    from features.presets import PRESETS
    from trainables.config import REAL_VALUED, check_frontend, recipe_frontend

    real = resolve_config({"model": model}, preset=PRESETS["awe_raw"])
    for k, v in REAL_VALUED["recommended"][model].items():
        assert real[k] == v, k
    bounded = resolve_config({"model": model}, preset=PRESETS["audiomnist"])
    assert bounded["likelihood"] == "bernoulli" and bounded["style_clusters"] == 0
    assert resolve_config({"model": model, "d_z": 3}, preset=PRESETS["awe_raw"])["d_z"] == 3
    for recipe in RECIPES:
        front = recipe_frontend(recipe, model)
        assert front in PRESETS
        check_frontend(resolve_config({"model": model, "recipe": recipe}, preset=PRESETS[front]), PRESETS[front])
