"""Shapes and parameterisation of the score networks and of get_score_fn."""

import pytest
import torch

from configs.default import get_default_config
from models import ScoreMLP, UNet, get_model, get_score_fn
from sde_lib import VESDE, VPSDE, subVPSDE


def _cfg(name, **model):
    c = get_default_config()
    c.data.image_size, c.data.num_channels, c.data.dim = 8, 1, 3
    base = dict(name=name, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0,
                hidden=16, num_blocks=2)
    base.update(model)
    c.model.update(base)
    return c


@pytest.mark.parametrize("name", ["ddpmpp", "ncsnpp"])
@pytest.mark.parametrize("size,ch_mult,channels", [(8, (1, 2), 1), (16, (1, 2, 2), 3), (12, (1, 2), 2)])
def test_unet_shapes(name, size, ch_mult, channels):
    c = _cfg(name, ch_mult=ch_mult)
    c.data.image_size, c.data.num_channels = size, channels
    net = get_model(c)
    assert isinstance(net, UNet)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, channels, size, size, generator=g)
    t = torch.rand(3, generator=g)
    out = net(x, t)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(out))   # zero-initialised output conv
    with torch.no_grad():                       # random weights everywhere, to test the wiring
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    out = net(x, t)
    assert torch.isfinite(out).all() and out.abs().max() > 1e-3
    # each sample's output depends on that sample alone (no statistics across the batch) ...
    torch.testing.assert_close(net(x[1:2], t[1:2]), out[1:2], rtol=1e-5, atol=1e-5)
    # ... on its noise label, and on every input pixel (attention/downsampling reach the far corner)
    assert (net(x, t + 0.3) - out).abs().max() > 1e-4
    xr = x[:1].clone().requires_grad_(True)
    net(xr, t[:1])[0, :, 0, 0].sum().backward()
    assert xr.grad[0, :, -1, -1].abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)   # every layer is used


def test_family_presets_differ():
    a, b = get_model(_cfg("ddpmpp")), get_model(_cfg("ncsnpp"))
    assert type(a.embed).__name__ == "SinusoidalEmbedding"
    assert type(b.embed).__name__ == "GaussianFourierEmbedding"
    assert any(type(m).__name__ == "Downsample" for m in a.down)
    assert not any(type(m).__name__ == "Downsample" for m in b.down)


def test_unet_bad_size_and_input():
    c = _cfg("ddpmpp", ch_mult=(1, 2, 2))
    c.data.image_size = 6  # 6 cannot be halved twice
    with pytest.raises(ValueError, match="cannot be halved"):
        get_model(c)
    net = get_model(_cfg("ddpmpp"))
    with pytest.raises(ValueError, match=r"\[B, 1, 8, 8\]"):
        net(torch.randn(2, 1, 4, 4), torch.rand(2))


def test_unet_is_conditioned_and_trainable():
    torch.manual_seed(0)
    net = get_model(_cfg("ddpmpp"))
    # Residual branches and the output layer are zero-initialised (output 0 and no dependence
    # on the label at init); perturb every parameter so the conditioning path shows.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 1, 8, 8)
    a, b = net(x, torch.tensor([0.1, 0.1])), net(x, torch.tensor([0.9, 0.9]))
    assert not torch.allclose(a, b)
    # No interaction across the batch (GroupNorm, not BatchNorm): sample 0 alone gives the same output.
    assert torch.allclose(net(x[:1], torch.tensor([0.1])), a[:1], atol=1e-5)


def test_mlp_shapes_and_errors():
    net = get_model(_cfg("mlp"))
    assert isinstance(net, ScoreMLP)
    assert net(torch.randn(5, 3), torch.rand(5)).shape == (5, 3)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        net(torch.randn(5, 2), torch.rand(5))


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model name 'resnet'.*ddpmpp.*mlp.*ncsnpp"):
        get_model(_cfg("resnet"))


class _Const(torch.nn.Module):
    """A 'network' that records its label and returns a constant c * ones."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, label):
        self.label = label
        return torch.full_like(x, self.c) + 0 * self.p


@pytest.mark.parametrize("sde", [VPSDE(0.1, 20.0, 1000), subVPSDE(0.1, 20.0, 1000)])
def test_score_fn_vp_is_minus_noise_over_std(sde):
    net = _Const(2.0)
    score_fn = get_score_fn(sde, net)
    t = torch.tensor([0.01, 0.5, 1.0])
    x = torch.randn(3, 2)
    s = score_fn(x, t)
    _, std = sde.marginal_coeffs(t)
    assert torch.allclose(s, -2.0 / std[:, None].expand_as(x))
    assert torch.equal(net.label, t)  # VP family is fed the continuous time


def test_score_fn_ve_is_output_over_sigma_with_log_sigma_label():
    sde = VESDE(0.01, 50.0, 1000)
    net = _Const(3.0)
    score_fn = get_score_fn(sde, net)
    t = torch.tensor([0.0, 0.5, 1.0])
    s = score_fn(torch.zeros(3, 1, 2, 2), t)
    sigma = 0.01 * (5000.0 ** t)
    assert torch.allclose(s, (3.0 / sigma).reshape(3, 1, 1, 1).expand(3, 1, 2, 2), rtol=1e-5)
    assert torch.allclose(net.label, torch.log(sigma), atol=1e-5)


def test_score_fn_recovers_exact_gaussian_score_from_ideal_denoiser():
    """If the network outputs the exact E[z | x_t] for Gaussian data N(0, c^2 I), get_score_fn
    returns the exact score -x / (m^2 c^2 + s^2) (checks the sign and the 1/std factor end to end)."""
    sde, c = VPSDE(0.1, 20.0, 1000), 0.5

    class Ideal(torch.nn.Module):
        def forward(self, x, t):
            m, s = sde.marginal_coeffs(t)
            v = m ** 2 * c ** 2 + s ** 2
            return (s / v)[:, None] * x   # E[z | x_t] = s x_t / v

    t = torch.tensor([0.05, 0.3, 0.9])
    x = torch.randn(3, 4)
    m, s = sde.marginal_coeffs(t)
    exact = -x / (m ** 2 * c ** 2 + s ** 2)[:, None]
    assert torch.allclose(get_score_fn(sde, Ideal())(x, t), exact, rtol=1e-5)


def test_get_score_fn_train_flag_sets_mode():
    net = get_model(_cfg("mlp", dropout=0.5))
    get_score_fn(VPSDE(), net, train=True)
    assert net.training
    get_score_fn(VPSDE(), net, train=False)
    assert not net.training


def test_gaussian_mixture_reexported():
    from models import GaussianMixture as A
    from models.analytic import GaussianMixture as B
    assert A is B
