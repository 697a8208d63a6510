"""Models: shapes for every preset size, guards, finite gradients, inference outputs, init, size."""
from __future__ import annotations

import pytest
import torch

from trainables.models import MODELS, Batch, CatUVAC, ConvDecoder, ConvEncoder, UVAC
from trainables.models.blocks import broadcast_cat, encoder_grid
from trainables.models.cat_uvac import gumbel_softmax_fp32
from trainables.losses import DIVERGENCES

from tests.conftest import TINY_NET as TINY

pytestmark = pytest.mark.usefixtures("one_thread")


SIZES = [(128, 99), (128, 132), (128, 332), (64, 32), (16, 16), (17, 31), (33, 47), (31, 16)]


def _to_linear(x01, stats):
    # an invertible stand-in for features.frontend.denormalise: magnitude in [0.1, 2.1] * scale
    return (x01 * 2.0 + 0.1) * stats[:, :1, None]


@pytest.mark.parametrize("f,t", SIZES)
def test_decoder_output_equals_input_shape(f, t):
    enc = encoder_grid(f, t, 4)
    dec = ConvDecoder(5, f, t, channels=(2, 2, 2, 2))
    out = dec(torch.randn(2, 5))
    assert out.shape == (2, 1, f, t), (enc, out.shape)


@pytest.mark.parametrize("f,t", [(128, 99), (64, 32), (17, 31)])
def test_models_reconstruct_input_shape(f, t):
    torch.manual_seed(0)
    for cls in MODELS.values():
        m = cls(f, t, n_clusters=3, d_z=2, **TINY)
        x = torch.rand(2, f, t)
        out = m(x) if cls is UVAC else m(x, tau=0.7)
        assert out["recon"].shape == x.shape
        x4 = x[:, None]
        out4 = m(x4) if cls is UVAC else m(x4, tau=0.7)
        assert out4["recon"].shape == x4.shape


def test_paper_grid_128x99():
    assert encoder_grid(128, 99, 4)[-1] == (8, 6)


def test_guards():
    m = UVAC(32, 20, n_clusters=3, d_z=2, **TINY)
    with pytest.raises(ValueError, match="32 x 20"):
        m(torch.rand(2, 32, 21))
    with pytest.raises(ValueError, match=r"\[B, F, T\]"):
        m(torch.rand(2, 2, 32, 20))
    with pytest.raises(ValueError, match=">= 2"):
        UVAC(1, 20, **TINY)
    assert UVAC(15, 20, **TINY).channels_used == TINY["channels"][:3]  # the depth follows the input size
    with pytest.raises(ValueError, match="divergence"):
        UVAC(32, 20, divergence="l1", **TINY)
    with pytest.raises(ValueError):
        ConvEncoder(1, 32, 20, channels=(2, 2), gru_hidden=4)(torch.rand(2, 3, 32, 20))


def test_final_activation_depends_on_divergence():
    torch.manual_seed(0)
    x = torch.rand(3, 32, 24)
    for div in ("euc", "is", "kl"):
        m = UVAC(32, 24, n_clusters=3, d_z=2, divergence=div, **TINY)
        with torch.no_grad():
            # push the last layer's bias far out: a sigmoid saturates in (0, 1), log v does not
            m.decoder.deconvs[-1].bias.fill_(-5.0)
            r = m(x)["recon"]
        if div == "euc":
            assert r.min() >= 0 and r.max() <= 1
        else:
            assert r.max() < 0  # log v: negative values only possible without a sigmoid


def test_init_kaiming_zero_bias_and_prior():
    m = UVAC(32, 24, n_clusters=4, d_z=3, **TINY)
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            assert torch.count_nonzero(mod.bias) == 0
            assert mod.weight.abs().max() > 0
        if isinstance(mod, torch.nn.GRU):
            for name, p in mod.named_parameters():
                if name.startswith("bias"):
                    assert torch.count_nonzero(p) == 0
    assert torch.all((m.pi_logits >= 0) & (m.pi_logits <= 1))
    assert torch.count_nonzero(m.prior_logvar) == 0
    assert m.prior_mu.shape == (4, 3)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("div", DIVERGENCES)
def test_finite_gradients(model, div):
    torch.manual_seed(1)
    f, t = 24, 20
    m = MODELS[model](f, t, n_clusters=3, d_z=2, divergence=div, to_linear=_to_linear, **TINY).train()
    x = torch.rand(4, f, t)
    x[0, :, 15:] = 0.0  # padding frames
    mask = torch.ones(4, t)
    mask[0, 15:] = 0
    stats = torch.tensor([[1.0, 1.0, 0.0, 1.0]]).repeat(4, 1)
    total, terms = m.training_step(Batch(x, mask, stats), 0.5)
    assert torch.isfinite(total)
    assert all(torch.isfinite(v) for v in terms.values())
    total.backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("model", sorted(MODELS))
def test_infer_contract(model):
    """Every registered model: probs [B, K] summing to 1, cluster = argmax, each declared
    representation present with its shape; eval is deterministic, training samples."""
    torch.manual_seed(0)
    m = MODELS[model](32, 24, n_clusters=5, d_z=3, **TINY).eval()
    x, mask = torch.rand(6, 32, 24), torch.ones(6, 24)
    inf = m.infer(x, mask)
    assert inf["probs"].shape == (6, 5)
    assert torch.allclose(inf["probs"].sum(1), torch.ones(6), atol=1e-5)
    assert torch.equal(inf["cluster"], inf["probs"].argmax(1))
    assert torch.equal(m.predict(x, mask), inf["cluster"])
    dims = {"z": 3, "y": 5}
    for r in m.representations:
        assert inf[r].shape == (6, dims[r]), r
    assert torch.equal(m.infer(x, mask)["z"], inf["z"])
    m.train()
    assert not torch.equal(m(x)["z"], m(x)["z"])
    assert 0 < m.inference_parameters() < sum(p.numel() for p in m.parameters())


def test_uvac_infer_uses_the_latent_mean():
    torch.manual_seed(0)
    m = UVAC(32, 24, n_clusters=5, d_z=3, **TINY).eval()
    x = torch.rand(6, 32, 24)
    mu, _ = m.encode(x)
    assert torch.allclose(m.infer(x)["z"], mu)
    assert torch.allclose(m.infer(x)["probs"], m.cluster_probs(mu))


def test_uvac_cluster_probs_follow_the_prior():
    m = UVAC(32, 24, n_clusters=3, d_z=2, **TINY)
    with torch.no_grad():
        m.pi_logits.zero_()
        m.prior_logvar.zero_()
        m.prior_mu.copy_(torch.tensor([[-5.0, 0.0], [0.0, 0.0], [5.0, 0.0]]))
    z = torch.tensor([[-4.9, 0.1], [0.2, -0.1], [5.5, 0.0]])
    assert m.cluster_probs(z).argmax(1).tolist() == [0, 1, 2]


def test_cat_uvac_infer_predict_and_eval_y():
    torch.manual_seed(0)
    m = CatUVAC(32, 24, n_clusters=4, d_z=3, **TINY).eval()
    x = torch.rand(5, 32, 24)
    inf = m.infer(x)
    assert torch.equal(m.predict(x), inf["logits"].argmax(1))
    assert torch.allclose(inf["probs"], torch.softmax(inf["logits"], 1))
    assert torch.equal(inf["y"], inf["probs"])
    out = m(x, tau=0.5)  # eval: no Gumbel noise, y = softmax(logits / tau)
    assert torch.allclose(out["y"], torch.softmax(out["logits"] / 0.5, 1), atol=1e-6)
    m_hot = CatUVAC(32, 24, n_clusters=4, d_z=3, eval_y="onehot", **TINY).eval()
    m_hot.load_state_dict(m.state_dict())
    logits = m_hot.logits(x)
    mu_hot, _ = m_hot.encode_z(x, torch.nn.functional.one_hot(logits.argmax(1), 4).float())
    assert torch.allclose(m_hot.infer(x)["z"], mu_hot)


def test_cat_uvac_tau_floor_and_training_sample():
    torch.manual_seed(0)
    m = CatUVAC(32, 24, n_clusters=4, d_z=3, tau_floor=0.1, **TINY).train()
    out = m(torch.rand(3, 32, 24), tau=0.001)
    assert out["tau"] == pytest.approx(0.1)
    assert out["y"].dtype == torch.float32
    assert torch.allclose(out["y"].sum(1), torch.ones(3), atol=1e-5)


def test_gumbel_softmax_fp32_under_autocast():
    logits = torch.randn(8, 5).to(torch.bfloat16)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        y = gumbel_softmax_fp32(logits, 0.5)
    assert y.dtype == torch.float32
    assert torch.allclose(y.sum(1), torch.ones(8), atol=1e-5)
    # low temperature -> close to one-hot; the argmax follows logits + noise
    torch.manual_seed(3)
    y_cold = gumbel_softmax_fp32(torch.tensor([[10.0, 0.0, 0.0]]).repeat(100, 1), 0.1)
    assert (y_cold.argmax(1) == 0).float().mean() > 0.95
    assert y_cold.max(1).values.mean() > 0.9
    y_nonoise = gumbel_softmax_fp32(torch.tensor([[1.0, 0.0]]), 1.0, noise=False)
    assert torch.allclose(y_nonoise, torch.softmax(torch.tensor([[1.0, 0.0]]), 1))


def test_broadcast_cat():
    x = torch.zeros(2, 1, 4, 3)
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    c = broadcast_cat(x, y)
    assert c.shape == (2, 3, 4, 3)
    assert torch.all(c[1, 2] == 4.0) and torch.all(c[0, 1] == 1.0)


def test_parameter_count_paper_ballpark():
    m = UVAC(128, 99)
    total = sum(p.numel() for p in m.parameters())
    inference = m.inference_parameters()
    print(f"UVAC 128x99: {total} parameters, {inference} for inference (paper: ~2M, ~1.3M)")
    assert inference < total
    assert 1.5e6 < total < 2.5e6
    assert 1.0e6 < inference < 1.6e6
    c = CatUVAC(128, 99)
    assert c.inference_parameters() < sum(p.numel() for p in c.parameters())


@pytest.mark.gpu
@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("div", DIVERGENCES)
def test_bf16_autocast_on_cuda(model, div):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    dev = torch.device("cuda")
    f, t = 128, 99
    m = MODELS[model](f, t, n_clusters=10, d_z=10, divergence=div, to_linear=_to_linear).to(dev).train()
    x = torch.rand(8, f, t, device=dev)
    mask = torch.ones(8, t, device=dev)
    stats = torch.tensor([[1.0, 1.0, 0.0, 1.0]], device=dev).repeat(8, 1)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        out = m(x) if model == "uvac" else m(x, tau=0.5)
    if model == "cat_uvac":
        assert out["y"].dtype == torch.float32 and out["logits"].dtype == torch.float32
    assert out["recon"].shape == x.shape
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        total, terms = m.training_step(Batch(x, mask, stats), 0.5)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
