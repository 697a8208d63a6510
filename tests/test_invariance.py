"""Invariance stabilisers are honoured: augmented views, the consistency terms, the overclustering
head, free bits on KL_z, and real-valued (CMN) inputs with the depth following the input size."""
from __future__ import annotations

import math

import pytest
import torch

from features.frontend import get_preset
from trainables.augment import AUGMENTATIONS, augmenter_for
from trainables.config import ConfigError, resolve_config
from trainables.consistency import mutual_information_gap, self_label, symmetric_kl
from trainables.losses import gaussian_kl, gaussian_kl_free_bits
from trainables.models import MODELS, Batch, CatUVAC, UVAC

from tests.conftest import TINY_NET as TINY

pytestmark = pytest.mark.usefixtures("one_thread")
STRENGTHS = {"aug_speed": 0.2, "aug_warp": 0.15, "aug_shift": 0.15, "aug_eq": 0.3}


def _features(preset, b=6, seed=0):
    """A batch shaped like the preset's table: [0, 1] (clip) or real-valued with zero row means (band);
    under ``pad`` the last frames of every other clip are padding."""
    g = torch.Generator().manual_seed(seed)
    f, t = preset.shape
    x = torch.rand(b, f, t, generator=g)
    mask = torch.ones(b, t)
    if preset.duration_mode == "pad":
        mask[::2, t // 2:] = 0
    if not preset.bounded:
        x = (x - x.mean(2, keepdim=True)) * 4
    return x * mask[:, None, :], mask


@pytest.mark.parametrize("preset_name", ["audiomnist", "compact", "mfcc", "logmel", "awe"])
@pytest.mark.parametrize("op", AUGMENTATIONS)
def test_each_augmentation_changes_the_input_and_keeps_its_shape(op, preset_name):
    preset = get_preset(preset_name)
    x, mask = _features(preset)
    torch.manual_seed(1)
    aug = augmenter_for({"augment": op, **STRENGTHS}, preset)
    xa, ma = aug(x, mask)
    assert xa.shape == x.shape and ma.shape == mask.shape and torch.isfinite(xa).all()
    assert float((xa - x).abs().mean()) > 1e-3 * float(x.abs().mean())
    assert torch.all(xa[(ma == 0)[:, None, :].expand_as(xa)] == 0)  # padding frames stay empty
    if preset.bounded:
        assert float(xa.min()) >= 0 and float(xa.max()) <= 1
    if preset.duration_mode == "stretch":
        assert torch.all(ma == 1)  # every frame of a stretched clip stays real
    torch.manual_seed(1)
    again, _ = aug(x, mask)
    assert torch.equal(again, xa)  # drawn from torch's (checkpointed) generator


def test_speed_scales_the_real_frames_of_a_padded_clip():
    preset = get_preset("compact")
    x, mask = _features(preset, b=64)
    aug = augmenter_for({"augment": "speed", **STRENGTHS}, preset)
    torch.manual_seed(0)
    _, ma = aug(x, mask)
    ratio = ma[::2].sum(1) / mask[::2].sum(1)  # faster -> fewer real frames, slower -> more
    assert float(ratio.min()) < 0.95 and float(ratio.max()) > 1.05 and float(ratio.max()) < 1.0 / 0.8 + 0.1


def test_no_augmentation_means_no_augmenter_and_bad_names_are_refused():
    assert augmenter_for({"augment": "none", **STRENGTHS}, get_preset("mfcc")) is None
    with pytest.raises(ConfigError, match="unknown augmentation"):
        resolve_config({"augment": "speed,pitch"})
    with pytest.raises(ConfigError, match="set augment"):
        resolve_config({"consistency": "mi"})
    with pytest.raises(ConfigError, match="consistency to mi or skl"):
        resolve_config({"overcluster": 5})
    assert resolve_config({"augment": " warp , speed"})["augment"] == "warp,speed"


# ------------------------------------------------------------------ consistency terms
def _onehot(idx, k):
    return torch.log(torch.nn.functional.one_hot(torch.as_tensor(idx), k).float().clamp_min(1e-12))


def test_consistency_is_zero_for_identical_views_and_rises_when_they_disagree():
    k = 4
    same = _onehot([0, 1, 2, 3] * 2, k)
    assert float(mutual_information_gap(same, same)) == pytest.approx(0.0, abs=1e-5)
    assert float(symmetric_kl(same, same)) == pytest.approx(0.0, abs=1e-6)
    soft = torch.log_softmax(torch.randn(8, k, generator=torch.Generator().manual_seed(0)), 1)
    assert float(symmetric_kl(soft, soft)) == pytest.approx(0.0, abs=1e-6)
    half = _onehot([0, 1, 2, 3, 1, 0, 3, 2], k)  # half the clips swap clusters in the second view
    other = _onehot([1, 0, 3, 2] * 2, k)  # every clip swapped
    for term in (mutual_information_gap, symmetric_kl):
        assert 0 < float(term(same, half))
    assert float(symmetric_kl(same, half)) < float(symmetric_kl(same, other))
    # IIC's balance: one cluster for everything is as bad as it gets, even when both views agree
    one = _onehot([0] * 8, k)
    assert float(mutual_information_gap(one, one)) == pytest.approx(math.log(k), abs=1e-5)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("kind", ["mi", "skl"])
def test_consistency_term_enters_the_loss_with_its_weight(model, kind):
    preset = get_preset("mfcc")
    x, mask = _features(preset, b=8)
    stats = torch.zeros(8, 4)
    xa, ma = augmenter_for({"augment": "warp,shift", **STRENGTHS}, preset)(x, mask)
    batch = Batch(x, mask, stats).with_view(xa, ma)

    def step(weight, overcluster=0):
        torch.manual_seed(0)
        m = MODELS[model](20, 16, n_clusters=3, d_z=2, bounded=False, consistency=kind, consistency_weight=weight,
                          overcluster=overcluster, likelihood="gaussian_learned_freq", **TINY)
        if model == "uvac":
            m.prior_fitted.fill_(True)  # responsibilities are defined once the prior is fitted
        torch.manual_seed(1)
        return m, m.training_step(batch, 0.0)

    _, (t0, terms0) = step(0.0)
    _, (t1, terms1) = step(3.0)
    assert "consistency" in terms1 and float(terms1["consistency"].detach()) > 0
    assert float(t1 - t0) == pytest.approx(3.0 * float(terms1["consistency"]), rel=1e-4)
    m, (t2, terms2) = step(3.0, overcluster=4)
    assert m.over_head.out_features == 12 and "consistency_over" in terms2
    t2.backward()
    assert m.over_head.weight.grad is not None and float(m.over_head.weight.grad.abs().sum()) > 0
    # without a view there is nothing to compare
    plain = MODELS[model](20, 16, n_clusters=3, d_z=2, bounded=False, consistency=kind, **TINY)
    _, terms3 = plain.training_step(Batch(x, mask, stats), 0.0)
    assert "consistency" not in terms3


def test_self_label_is_the_views_cross_entropy_at_the_confident_clips_clusters():
    """SCAN's self-labelling on a known case: clips 0 and 2 are sure (0.995 >= 0.99), clip 1 is not;
    the view pays -log q at the clean cluster of the sure clips only, and only the view is trained."""
    p = torch.tensor([[0.995, 0.005, 0.0], [0.6, 0.4, 0.0], [0.0025, 0.0025, 0.995]]).clamp_min(1e-12).log()
    q = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]).log().requires_grad_(True)
    p.requires_grad_(True)
    loss = self_label(p, q, 0.99)
    assert float(loss.detach()) == pytest.approx(-(math.log(0.5) + math.log(0.6)) / 2, rel=1e-5)
    loss.backward()
    assert p.grad is None or float(p.grad.abs().sum()) == 0  # the clean posterior is a target only
    assert float(q.grad[1].abs().sum()) == 0 and float(q.grad[0, 0]) < 0  # the unsure clip is left alone
    assert float(self_label(p.detach(), q.detach(), 0.0)) > float(loss.detach())  # threshold 0: every clip, clip 1 too
    none = self_label(p.detach(), q, 0.999)  # no clip that sure: nothing, with the graph kept
    assert float(none) == 0.0 and none.requires_grad
    assert float(self_label(p.detach(), p.detach(), 0.99)) < float(loss.detach())  # a view that agrees pays less
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        self_label(p, q, 1.5)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_self_label_term_enters_the_loss_with_its_weight_and_needs_a_view(model):
    preset = get_preset("mfcc")
    x, mask = _features(preset, b=8)
    xa, ma = augmenter_for({"augment": "warp,shift", **STRENGTHS}, preset)(x, mask)
    batch = Batch(x, mask, torch.zeros(8, 4)).with_view(xa, ma)

    def step(weight):
        torch.manual_seed(0)
        m = MODELS[model](20, 16, n_clusters=3, d_z=2, bounded=False, self_label=weight, self_label_threshold=0.0,
                          likelihood="gaussian_learned_freq", **TINY)
        if model == "uvac":
            m.prior_fitted.fill_(True)  # responsibilities are defined once the prior is fitted
        torch.manual_seed(1)
        return m.training_step(batch, 0.0)

    t0, terms0 = step(0.0)
    t1, terms1 = step(2.0)
    assert "self_label" not in terms0 and float(terms1["self_label"].detach()) > 0
    assert float(t1 - t0) == pytest.approx(2.0 * float(terms1["self_label"]), rel=1e-4)
    with pytest.raises(ConfigError, match="self_label: self-labelling trains a batch's view"):
        resolve_config({"model": model, "self_label": 1.0})
    cfg = resolve_config({"model": model, "self_label": 1.0, "neighbours": 5})  # a neighbour view is a view
    assert cfg["self_label"] == 1.0 and cfg["self_label_threshold"] == 0.99
    with pytest.raises(ConfigError, match="self_label_threshold"):
        resolve_config({"model": model, "self_label": 1.0, "augment": "shift", "self_label_threshold": 1.5})


def test_uvac_consistency_waits_for_the_fitted_prior():
    preset = get_preset("mfcc")
    x, mask = _features(preset, b=8)
    batch = Batch(x, mask, torch.zeros(8, 4)).with_view(x.flip(0), mask)
    m = UVAC(20, 16, n_clusters=3, d_z=2, bounded=False, prior_init="fit", consistency="mi", **TINY)
    _, terms = m.training_step(batch, 0.0)
    assert "consistency" not in terms  # responsibilities of an unfitted prior mean nothing
    m.prior_fitted.fill_(True)
    _, terms = m.training_step(batch, 0.0)
    assert float(terms["consistency"]) > 0


# ------------------------------------------------------------------ free bits
def test_free_bits_floor_each_latent_dimension():
    mu = torch.tensor([[0.1, 2.0], [-0.1, 2.0]], requires_grad=True)
    logvar = torch.zeros(2, 2, requires_grad=True)
    assert torch.allclose(gaussian_kl_free_bits(mu, logvar, 0.0), gaussian_kl(mu, logvar))
    fb = gaussian_kl_free_bits(mu, logvar, 0.5)
    # dimension 0 carries 0.005 nats -> counted as 0.5; dimension 1 carries 2 nats -> as is
    assert float(fb) == pytest.approx(0.5 + 2.0, abs=1e-5)
    fb.backward()
    assert float(mu.grad[:, 0].abs().sum()) == 0.0 and float(mu.grad[:, 1].abs().sum()) > 0


def test_free_bits_enter_both_models_loss():
    preset = get_preset("mfcc")
    x, mask = _features(preset, b=8)
    batch = Batch(x, mask, torch.zeros(8, 4))
    for cls in (UVAC, CatUVAC):
        torch.manual_seed(0)
        m0 = cls(20, 16, n_clusters=3, d_z=2, bounded=False, **TINY)
        torch.manual_seed(0)
        m1 = cls(20, 16, n_clusters=3, d_z=2, bounded=False, free_bits=50.0, **TINY)
        torch.manual_seed(2)
        t0, terms0 = m0.training_step(batch, 0.0)
        torch.manual_seed(2)
        t1, terms1 = m1.training_step(batch, 0.0)
        assert torch.allclose(terms0["kl_z"], terms1["kl_z"])  # the logged KL is the real one
        assert float(t1) > float(t0)  # a floor of 50 nats per dimension is above what two dimensions carry


# ------------------------------------------------------------------ small real-valued inputs
@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("preset_name", ["awe", "mfcc", "logmel"])
def test_both_models_train_on_small_real_valued_inputs(model, preset_name):
    preset = get_preset(preset_name)
    f, t = preset.shape
    x, mask = _features(preset, b=8)
    m = MODELS[model](f, t, n_clusters=3, d_z=2, bounded=False, channels=(4, 8, 8, 8), gru_hidden=8)
    assert len(m.channels_used) == min(4, int(math.log2(min(f, t))))
    assert m.recon.final_activation is None  # real-valued: no sigmoid
    m.on_train_start(lambda: iter([Batch(x, mask, torch.zeros(8, 4))]), seed=0)
    prepared = m.standardise(x)
    assert float(prepared.mean(dim=(0, 2)).abs().max()) < 1e-4  # standardised per row on the train split
    assert float((prepared.std(dim=(0, 2), unbiased=False) - 1).abs().max()) < 1e-3
    total, _ = m.training_step(Batch(x, mask, torch.zeros(8, 4)), 0.0)
    total.backward()
    assert torch.isfinite(total)
    m.eval()
    out = m.infer(x, mask)
    assert out["probs"].shape == (8, 3) and out["z"].shape == (8, 2)


def test_real_valued_inputs_refuse_the_bernoulli_likelihood():
    with pytest.raises(ValueError, match="real-valued"):
        CatUVAC(20, 16, n_clusters=3, d_z=2, bounded=False, likelihood="bernoulli", **TINY)


# ------------------------------------------------------------------ style factor
def test_style_factor_finds_a_planted_speaker_offset_and_removes_it_from_the_encoder_input():
    g = torch.Generator().manual_seed(3)
    n, f, t = 48, 20, 16
    speaker = torch.arange(n) % 2
    word = (torch.arange(n) // 2) % 3
    words = torch.randn(3, f, t, generator=g)
    offsets = torch.stack([torch.zeros(f, t), torch.linspace(-3, 3, f)[:, None].expand(f, t)])  # a spectral tilt
    x = words[word] + offsets[speaker] + 0.1 * torch.randn(n, f, t, generator=g)
    mask = torch.ones(n, t)
    batches = lambda: iter([Batch(x, mask, torch.zeros(n, 4))])  # noqa: E731
    m = UVAC(f, t, n_clusters=3, d_z=2, bounded=False, style_clusters=2, **TINY)
    m.on_train_start(batches, seed=0)
    s = m.style.log_probs(m.standardise(x), mask).argmax(1)
    assert (s == speaker).all() or (s == 1 - speaker).all()  # the styles are the speakers
    raw, enc = m.standardise(x), m.prepare(x, mask)
    gap = lambda v: float((v[speaker == 0].mean(0) - v[speaker == 1].mean(0)).norm())  # noqa: E731
    assert gap(enc) < 0.2 * gap(raw)  # what the encoder sees no longer tells the speakers apart
    total, terms = m.training_step(Batch(x, mask, torch.zeros(n, 4)), 0.0)
    assert {"kl_s", "kl_sbar"} <= set(terms) and torch.isfinite(total)
    total.backward()
    assert m.style.offsets.grad is not None and float(m.style.offsets.grad.abs().sum()) > 0


def test_style_factor_needs_real_valued_features():
    with pytest.raises(ValueError, match="real-valued"):
        CatUVAC(20, 16, n_clusters=3, d_z=2, bounded=True, style_clusters=4, **TINY)
    with pytest.raises(ConfigError, match="style_clusters"):
        resolve_config({"style_clusters": 1})


# ------------------------------------------------------------------ factorial prior (UVAC)
def test_factorial_prior_sums_its_styles_into_the_content_clusters():
    torch.manual_seed(0)
    m = UVAC(20, 16, n_clusters=3, d_z=2, bounded=False, prior_init="fit", prior_styles=2, **TINY)
    assert m.prior_mu.shape == (6, 2) and m.pi_logits.shape == (6,)
    g = torch.Generator().manual_seed(0)
    content = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    style = torch.tensor([[0.0, 0.0], [20.0, 20.0]])
    k, s = torch.arange(60) % 3, (torch.arange(60) // 3) % 2
    mu = (content[k] + style[s] + 0.1 * torch.randn(60, 2, generator=g)).numpy().astype("float64")
    feats = torch.stack([s.float(), s.float()], 1).numpy().astype("float64")  # the style shows in the statistics
    m.fit_prior(mu, mu * 0 + 0.01, seed=0, style_features=feats)
    probs = m.cluster_probs(torch.as_tensor(mu, dtype=torch.float32))
    assert probs.shape == (60, 3) and torch.allclose(probs.sum(1), torch.ones(60), atol=1e-5)
    from trainables.metrics import unsupervised_accuracy
    assert unsupervised_accuracy(k.numpy(), probs.argmax(1).numpy()) == 1.0  # the content, whatever the style
    with pytest.raises(ValueError, match="prior_styles"):
        UVAC(20, 16, n_clusters=3, d_z=2, prior_styles=1, **TINY)
