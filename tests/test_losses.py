"""Losses: divergence properties, masking, KL closed forms, and that training reduces the loss."""
from __future__ import annotations

import math

import pytest
import torch

from trainables.losses import (
    DIVERGENCES,
    categorical_kl_uniform,
    gaussian_kl,
    gaussian_kl_diag,
    gkl_divergence,
    gmm_kl,
    is_divergence,
    reconstruction,
)
from trainables.models import MODELS, Batch, CatUVAC, UVAC

from tests.conftest import TINY_NET as TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def _to_linear(x01, stats):
    """Stand-in de-normalisation (linear in x01): magnitude = (x01 * scale + offset)."""
    return x01 * stats[:, 1, None, None] + stats[:, 0, None, None]


def _stats(b, scale=2.0, offset=0.05):
    return torch.tensor([[offset, scale, 0.0, 1.0]]).repeat(b, 1)


def test_is_scale_invariant():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, generator=g, dtype=torch.float64) + 0.01
    v = torch.rand(50, generator=g, dtype=torch.float64) + 0.01
    for a in (1e-3, 0.5, 7.0, 1e4):
        d1 = is_divergence(x, v.log())
        d2 = is_divergence(a * x, (a * v).log())
        assert torch.allclose(d1, d2, rtol=1e-9, atol=1e-12)
    assert torch.all(is_divergence(x, x.log()).abs() < 1e-12)  # d(x|x) = 0
    assert torch.all(is_divergence(x, v.log()) >= 0)


def test_gkl_scales_linearly():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(50, generator=g, dtype=torch.float64)
    x[:5] = 0.0  # 0 log 0 = 0
    v = torch.rand(50, generator=g, dtype=torch.float64) + 0.01
    for a in (1e-3, 0.5, 7.0, 1e4):
        assert torch.allclose(gkl_divergence(a * x, (a * v).log()), a * gkl_divergence(x, v.log()),
                              rtol=1e-9, atol=1e-12)
    assert torch.all(torch.isfinite(gkl_divergence(x, v.log())))
    assert torch.allclose(gkl_divergence(x[:5], v[:5].log()), v[:5])  # x = 0: d = v
    assert torch.all(gkl_divergence(x[5:], x[5:].log()).abs() < 1e-12)


def test_reconstruction_euc_value():
    x = torch.full((2, 3, 4), 0.5)
    out = torch.full((2, 3, 4), 0.25)
    mask = torch.ones(2, 4)
    # per-clip sum over the 12 bins, mean over the batch
    assert reconstruction(x, out, mask, "euc").item() == pytest.approx(12 * 0.0625)
    assert reconstruction(x, out, mask, "euc", reduction="mean_bins").item() == pytest.approx(0.0625)


@pytest.mark.parametrize("div", DIVERGENCES)
def test_masked_frames_do_not_affect_loss_or_gradient(div):
    torch.manual_seed(0)
    b, f, t = 3, 5, 8
    x = torch.rand(b, f, t)
    out = torch.randn(b, f, t) if div != "euc" else torch.rand(b, f, t)
    mask = torch.ones(b, t)
    mask[:, 6:] = 0
    mask[1, 3:] = 0
    stats = _stats(b)
    x2, out2 = x.clone(), out.clone()
    x2[:, :, 6:] = 0.0  # target zero on masked frames: log x would be -inf for IS
    x2[1, :, 3:] = torch.rand(f, t - 3)
    out2[:, :, 6:] = 1e3  # absurd prediction on masked frames
    out2[1, :, 3:] = -1e3
    kw = dict(norm_stats=stats, to_linear=lambda a, s: _to_linear(a, s) * (a > 0))  # x01=0 -> magnitude 0
    o1 = out.clone().requires_grad_(True)
    o2 = out2.clone().requires_grad_(True)
    l1 = reconstruction(x, o1, mask, div, **kw)
    l2 = reconstruction(x2, o2, mask, div, **kw)
    assert torch.isfinite(l1) and torch.isfinite(l2)
    assert l1.item() == pytest.approx(l2.item(), rel=1e-6)
    l1.backward()
    l2.backward()
    assert torch.isfinite(o2.grad).all()
    assert torch.all(o2.grad[:, :, 6:] == 0) and torch.all(o2.grad[1, :, 3:] == 0)
    assert torch.allclose(o1.grad, o2.grad, atol=1e-6)


def test_is_and_kl_use_denormalised_values():
    """IS on power (= magnitude**2), generalised KL on magnitude, both from to_linear."""
    x01 = torch.rand(2, 4, 6)
    stats = _stats(2, scale=3.0, offset=0.2)
    mag = _to_linear(x01, stats)
    log_v = torch.randn(2, 4, 6)
    mask = torch.ones(2, 6)
    got_is = reconstruction(x01, log_v, mask, "is", stats, to_linear=_to_linear, is_eps=0.0)
    want_is = is_divergence(mag**2, log_v).sum(dim=(1, 2)).mean()
    assert got_is.item() == pytest.approx(want_is.item(), rel=1e-5)
    got_kl = reconstruction(x01, log_v, mask, "kl", stats, to_linear=_to_linear)
    want_kl = gkl_divergence(mag, log_v).sum(dim=(1, 2)).mean()
    assert got_kl.item() == pytest.approx(want_kl.item(), rel=1e-5)
    # minimised (= 0) where v equals the de-normalised target
    assert reconstruction(x01, (mag**2).log(), mask, "is", stats, to_linear=_to_linear).abs().item() < 1e-3
    assert reconstruction(x01, mag.log(), mask, "kl", stats, to_linear=_to_linear).abs().item() < 1e-3


def test_is_needs_norm_stats():
    with pytest.raises(ValueError, match="norm_stats"):
        reconstruction(torch.rand(1, 2, 3), torch.rand(1, 2, 3), None, "is", to_linear=_to_linear)
    with pytest.raises(ValueError, match="divergence"):
        reconstruction(torch.rand(1, 2, 3), torch.rand(1, 2, 3), None, "l2")
    with pytest.raises(ValueError, match="mask"):
        reconstruction(torch.rand(1, 2, 3), torch.rand(1, 2, 3), torch.ones(1, 4), "euc")


def test_is_floor_keeps_zero_targets_finite():
    x01 = torch.zeros(1, 3, 4)
    x01[0, 0, 0] = 1.0
    stats = _stats(1, scale=1.0, offset=0.0)  # most bins have magnitude exactly 0
    loss = reconstruction(x01, torch.zeros(1, 3, 4), torch.ones(1, 4), "is", stats, to_linear=_to_linear)
    assert torch.isfinite(loss)


def test_reconstruction_with_frontend_denormalise():
    from features.frontend import denormalise, get_preset

    preset = get_preset("compact")
    x01 = torch.rand(2, 6, 5)
    stats = torch.tensor([[0.1, 1.5, -1.0, 2.0], [0.0, 1.0, -0.5, 1.5]])
    mag = denormalise(x01, stats, preset)
    log_v = torch.randn(2, 6, 5)
    got = reconstruction(x01, log_v, None, "kl", stats, preset)
    want = gkl_divergence(mag, log_v).sum(dim=(1, 2)).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_gaussian_kl_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    per = gaussian_kl(mu, logvar, per_clip=True)
    assert per[0].item() == pytest.approx(0.0, abs=1e-7)
    want = 0.5 * ((1 + 4 - 1 - math.log(4.0)) + (4 + 1 - 1 - 0))
    assert per[1].item() == pytest.approx(want, rel=1e-6)


def test_gmm_kl_with_one_component_is_the_gaussian_kl():
    torch.manual_seed(0)
    mu, logvar = torch.randn(7, 4), torch.randn(7, 4)
    pmu, plv = torch.randn(1, 4), torch.randn(1, 4)
    got = gmm_kl(mu, logvar, torch.randn(1), pmu, plv, per_clip=True)
    want = gaussian_kl_diag(mu, logvar, pmu, plv)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    # and with the standard normal prior, equals gaussian_kl
    got0 = gmm_kl(mu, logvar, torch.zeros(1), torch.zeros(1, 4), torch.zeros(1, 4))
    assert got0.item() == pytest.approx(gaussian_kl(mu, logvar).item(), rel=1e-5)


def test_gmm_kl_is_eq11_and_stable():
    torch.manual_seed(1)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    pi_logits = torch.randn(4)
    pmu, plv = torch.randn(4, 3), torch.randn(4, 3)
    pi = torch.softmax(pi_logits, 0)
    kl_c = gaussian_kl_diag(mu[:, None].double(), logvar[:, None].double(), pmu[None].double(), plv[None].double())
    want = -torch.log((pi.double()[None] * torch.exp(-kl_c)).sum(1))
    got = gmm_kl(mu, logvar, pi_logits, pmu, plv, per_clip=True)
    assert torch.allclose(got.double(), want, rtol=1e-5)
    # far from every component: exp(-KL) underflows to 0 in the naive form, logsumexp stays finite
    far = gmm_kl(mu + 1e3, logvar, pi_logits, pmu, plv)
    assert torch.isfinite(far) and far.item() > 1e4


def test_categorical_kl_uniform():
    assert categorical_kl_uniform(torch.zeros(3, 10)).abs().item() < 1e-6
    assert categorical_kl_uniform(torch.full((2, 4), 7.0)).abs().item() < 1e-6
    peaked = categorical_kl_uniform(torch.tensor([[100.0, 0.0, 0.0, 0.0]]))
    assert peaked.item() == pytest.approx(math.log(4.0), rel=1e-4)  # one-hot: log K
    assert categorical_kl_uniform(torch.randn(20, 5), per_clip=True).min() >= -1e-6


def _batch(x, mask=None):
    return Batch(x, torch.ones(x.shape[0], x.shape[2]) if mask is None else mask, _stats(x.shape[0]))


def test_loss_terms_and_lambda_weighting():
    """Eq. 7 for categorical UVAC and recon + KL for UVAC, assembled by the models' training_step."""
    x = torch.rand(3, 16, 16)

    def cat_step(**hp):
        torch.manual_seed(0)
        m = CatUVAC(16, 16, n_clusters=3, d_z=2, hparams=hp, **TINY).train()
        torch.manual_seed(1)
        total, terms = m.training_step(_batch(x), 0.0)
        torch.manual_seed(1)
        out = m(x, tau=m.tau_at(0.0))
        return total, terms, out

    t1, terms, out = cat_step(lam=1.0)
    t2, _, _ = cat_step(lam=2.0)
    t3, _, _ = cat_step(lam=2.0, kl_warmup_epochs=2)  # factor 0 at epoch 0: recon only
    assert set(terms) == {"recon", "kl_z", "kl_y"}
    kl = terms["kl_z"] + terms["kl_y"]
    assert torch.allclose(t1, terms["recon"] + kl)
    assert torch.allclose(t2, terms["recon"] + 2 * kl)
    assert torch.allclose(t3, terms["recon"])
    # KL_y from the logits of q(y|x), not from the relaxed sample y
    assert torch.allclose(terms["kl_y"], categorical_kl_uniform(out["logits"]))
    assert torch.allclose(terms["kl_z"], gaussian_kl(out["mu"], out["logvar"]))
    u = UVAC(16, 16, n_clusters=3, d_z=2, **TINY).train()
    tot, uterms = u.training_step(_batch(x), 0.0)
    assert set(uterms) == {"recon", "kl_z"}
    assert torch.allclose(tot, uterms["recon"] + uterms["kl_z"])


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("div", ["euc", "kl"])
def test_loss_decreases_on_tiny_data(model, div):
    torch.manual_seed(0)
    f, t, n = 16, 16, 8
    base = torch.linspace(0, 1, f)[:, None] * torch.linspace(1, 0.2, t)[None]
    x = (base[None] * (0.5 + 0.5 * torch.rand(n, 1, 1))).clamp(0, 1)
    mask = torch.ones(n, t)
    mask[:2, 12:] = 0
    m = MODELS[model](f, t, n_clusters=2, d_z=2, divergence=div, to_linear=_to_linear, **TINY).train()
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        total, _ = m.training_step(Batch(x, mask, _stats(n)), 0.0)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert all(math.isfinite(v) for v in losses)
    assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_bf16_autocast_outputs_give_fp32_losses(model):
    torch.manual_seed(0)
    x = torch.rand(2, 16, 16)
    m = MODELS[model](16, 16, n_clusters=2, d_z=2, **TINY)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        total, terms = m.training_step(_batch(x), 0.0)
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in terms.values())
    assert torch.isfinite(total)
