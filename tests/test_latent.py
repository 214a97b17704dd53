"""Latent score SDEs: the autoencoder's discrete decoder, the codec's one path through the scale factor,
and the likelihood bound against a linear Gaussian encoder/decoder whose bound is known exactly."""
import math

import pytest
import torch
from scipy.stats import norm

from configs.errors import InputError
from evaluation.latent_bound import latent_bound
from models.analytic import GaussianMixture
from models.autoencoder import Autoencoder, discretized_gaussian_log_prob, gaussian_kl
from sde_lib import VPSDE
from training.latent import LatentCodec

F64 = torch.float64


def test_discretized_gaussian_is_a_distribution_on_the_levels():
    """Probabilities of all L levels sum to 1; an inner bin is Phi(hi) - Phi(lo) (scipy), far tails finite."""
    L = 17
    k = torch.arange(L, dtype=F64)
    centres = (2 * k + 1) / L - 1
    for mean, sigma in ((0.1, 0.05), (-0.93, 0.3), (2.5, 0.01), (-0.2, 3.0)):
        lp = discretized_gaussian_log_prob(centres, torch.full_like(centres, mean),
                                           torch.full_like(centres, math.log(sigma)), L)
        assert torch.isfinite(lp).all()
        assert abs(lp.exp().sum().item() - 1.0) < 1e-10, (mean, sigma)
        c = centres[8].item()
        want = norm.cdf((c + 1 / L - mean) / sigma) - norm.cdf((c - 1 / L - mean) / sigma)
        if want > 1e-300:
            assert math.isclose(lp[8].exp().item(), want, rel_tol=1e-9, abs_tol=1e-300)
    # last bin reaches to +inf: P = 1 - Phi((c - 1/L - m)/s)
    lp = discretized_gaussian_log_prob(centres[-1:], torch.zeros(1, dtype=F64), torch.zeros(1, dtype=F64), L)
    assert math.isclose(lp.exp().item(), 1 - norm.cdf(centres[-1].item() - 1 / L), rel_tol=1e-12)


def test_autoencoder_shapes_and_kl():
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    for f, shape in ((1, (2, 8, 8)), (2, (2, 4, 4)), (4, (2, 2, 2))):
        ae = Autoencoder(8, 1, 17, f=f, latent_channels=2, nf=8)
        mu, logvar = ae.encode(x)
        assert mu.shape == logvar.shape == (3, *shape) and ae.latent_shape == shape
        assert ae.decode(mu).shape == x.shape and ae(x, torch.zeros_like(mu)).shape == (3, 2)
    with pytest.raises(ValueError, match="one of"):
        Autoencoder(8, 1, 17, f=3)
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.7]])
    want = sum(0.5 * (m ** 2 + math.exp(v) - 1 - v) for m, v in zip([0.5, -1.0], [0.2, -0.7]))
    assert math.isclose(gaussian_kl(mu, logvar).item(), want, rel_tol=1e-6)


def test_codec_applies_the_scale_once_and_refuses_bad_scales():
    torch.manual_seed(0)
    ae = Autoencoder(8, 1, 17, f=2, latent_channels=2, nf=8).eval()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    mu = ae.encode(x)[0]
    outs = []
    for s in (0.37, 1.0, 5.0):
        codec = LatentCodec(ae, s)
        u = codec.encode(x)
        torch.testing.assert_close(u, s * mu)
        torch.testing.assert_close(codec.decode_mean(u), ae.decode(mu))     # D(u / s): divided once
        outs.append(codec.decode(u))
        assert math.isclose(codec.log_scale_jacobian, 32 * math.log(s), rel_tol=1e-12)
    assert all(torch.equal(outs[0], o) for o in outs[1:])      # the scale never reaches the pixels
    levels = torch.round((outs[0] + 1) * 17 / 2 - 0.5)
    torch.testing.assert_close(outs[0], (2 * levels + 1) / 17 - 1)      # quantised to the 17 bin centres
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="must be a finite number > 0"):
            LatentCodec(ae, bad)


class _LinearGaussian:
    """x in R^D; q(z|x) = N(w x, v I); p(x|z) = N(b z, sig2 I) (a continuous decoder: the closed form)."""

    def __init__(self, w, v, b, sig2):
        self.w, self.v, self.b, self.sig2 = w, v, b, sig2

    def posterior(self, x):
        return self.w * x, torch.full_like(x, math.log(self.v))

    def log_px(self, x, z):
        r = x - self.b * z
        return (-0.5 * (math.log(2 * math.pi * self.sig2) + r.square() / self.sig2)).sum(1)


def test_latent_bound_terms_match_the_linear_gaussian_closed_form():
    """x ~ N(0, a2 I) in D = 4 dims, linear Gaussian encoder/decoder, the latent model the exact score of
    the aggregate posterior N(0, tau2 I) on u = s z with s = 3 / tau (so the Jacobian d log s matters).
    Exact per-dimension terms (nats): rec = log(2 pi sig2)/2 + ((1 - b w)^2 a2 + b^2 v) / (2 sig2),
    log_q = -log(2 pi v)/2 - 1/2, -log p(z) = log(2 pi k2)/2 + s2 tau2 / (2 k2) - log s with
    k2 = m(eps)^2 s2 tau2 + sigma(eps)^2 the VP marginal at the ODE's start time."""
    D, n, a2, w, v, b, sig2 = 4, 4000, 0.8, 0.9, 0.3, 0.7, 0.2
    tau2 = w * w * a2 + v
    s = 3.0 / math.sqrt(tau2)
    gen = torch.Generator().manual_seed(0)
    x = math.sqrt(a2) * torch.randn(n, D, generator=gen, dtype=F64)
    lg = _LinearGaussian(w, v, b, sig2)
    sde = VPSDE()
    gm = GaussianMixture([1.0], torch.zeros(1, D, dtype=F64), torch.full((1, D), s * s * tau2, dtype=F64))

    class Codec(LatentCodec):          # the codec's own log_pz (scale and Jacobian) around a linear model
        def __init__(self):
            self.autoencoder, self.scale, self.num_levels = None, s, None

        @property
        def latent_shape(self):
            return (D,)

    codec = Codec()
    eps = 1e-3

    def log_pz(z):
        return codec.log_pz(sde, gm.score_fn(sde), z, trace="exact", rtol=1e-6, atol=1e-6, eps=eps)

    res = latent_bound(x, lg.posterior, lg.log_px, log_pz, samples=2, generator=gen)
    m, sd = (c.item() for c in sde.marginal_coeffs(torch.tensor([eps], dtype=F64)))
    k2 = m * m * s * s * tau2 + sd * sd
    exact = {"rec": 0.5 * math.log(2 * math.pi * sig2) + ((1 - b * w) ** 2 * a2 + b * b * v) / (2 * sig2),
             "log_q": -0.5 * math.log(2 * math.pi * v) - 0.5,
             "neg_log_pz": 0.5 * math.log(2 * math.pi * k2) + s * s * tau2 / (2 * k2) - math.log(s)}
    total = 0.0
    for k, nats in exact.items():
        bits = nats / math.log(2)
        total += bits
        mean, se = res.terms[k]
        assert abs(mean - bits) < 4 * se + 1e-4, (k, mean, bits, se)
    assert abs(res.value - total) < 4 * res.stderr + 1e-4
    assert res.samples == 2 and res.per_example["bound"].shape == (n,)
    # in expectation the bound is at least the data's own entropy, 0.5 log2(2 pi e a2) bits per dimension
    assert res.value > 0.5 * math.log2(2 * math.pi * math.e * a2) - 4 * res.stderr


def test_autoencoder_learns_the_colour_patches():
    """At 3 channels on the embedded colour set: 40 Adam steps cut the held-out -log p(x|z) (bits/dim of the
    8-bit patches) below 0.6 of its start, and the decoder's probabilities of the 256 levels sum to 1."""
    from configs.default import get_default_config
    from training.data import get_dataset
    cfg = get_default_config()
    cfg.data.dataset, cfg.data.image_size, cfg.data.num_channels = "sample_patches", 32, 3
    ds = get_dataset(cfg)
    torch.manual_seed(0)
    ae = Autoencoder(32, 3, 256, f=4, latent_channels=4, nf=8)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    test = ds.test[:64]

    def heldout():
        with torch.no_grad():
            return ae(test, torch.zeros(64, 4, 8, 8))[:, 0].mean().item() / math.log(2)

    before = heldout()
    for _ in range(40):
        x = ds.train[torch.randint(0, ds.train.shape[0], (16,), generator=gen)]
        loss = ae(x, torch.randn(16, 4, 8, 8, generator=gen)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = heldout()
    assert 0 < after < 0.6 * before, (before, after)
    with torch.no_grad():                      # the trained decoder's distribution of one pixel over the 256 levels
        m = ae.decode(ae.encode(test[:1])[0])[0, :, 5, 7]
        levels = (2 * torch.arange(256.0) + 1) / 256 - 1
        p = discretized_gaussian_log_prob(levels[:, None], m[None], ae.log_sigma[None], 256).exp().sum(0)
    torch.testing.assert_close(p, torch.ones(3), rtol=0, atol=1e-5)


class _SpaceToDepth:
    """A linear, exactly invertible f = 2 "autoencoder": z = pixel_unshuffle(x, 2) (each 2x2 block of a pixel
    channel becomes 4 latent channels of one latent position), x = pixel_shuffle(z, 2)."""
    f, num_levels = 2, 256

    def __init__(self, c, h):
        self.latent_shape = (4 * c, h // 2, h // 2)

    def encode(self, x):
        z = torch.nn.functional.pixel_unshuffle(x, 2)
        return z, torch.zeros_like(z)

    def decode(self, z):
        return torch.nn.functional.pixel_shuffle(z, 2)


def test_latent_inpainting_with_a_linear_codec_samples_the_gaussian_conditional():
    """x ~ N(mu, diag var) on 1x4x4 pixels; the codec z = space-to-depth(x) with scale s = 2.5 and the latent
    model the exact score of u = s z ~ N(s mu', s^2 var') (mu', var' rearranged alike). Pixels are independent,
    so the exact conditional of the unobserved pixels is their marginal N(mu, var). The mask observes one whole
    2x2 block and one pixel of a second block: that second block's latent is sampled (a block is observed only
    if all its pixels are), its observed pixel is kept from x0 and its three others follow N(mu, var) -- not x0's
    off-mask values (set to 0.9, far from mu), and not a law scaled by s (the scale divided out once)."""
    from runner.latent import latent_inpaint
    from sde_lib import VPSDE
    N = 400
    gen = torch.Generator().manual_seed(0)
    mu = 0.3 * torch.randn(1, 4, 4, generator=gen, dtype=F64)
    var = (0.05 + 0.1 * torch.rand(1, 4, 4, generator=gen, dtype=F64)) ** 2
    ae, s = _SpaceToDepth(1, 4), 2.5
    codec = LatentCodec(ae, s)
    z_mu, z_var = ae.encode(mu[None])[0][0], ae.encode(var[None])[0][0]
    gm = GaussianMixture([1.0], (s * z_mu).reshape(1, -1), (s * s * z_var).reshape(1, -1))
    sde = VPSDE()

    def score_fn(u, t):                       # the mixture's exact score on flat vectors, on [B, 4, 2, 2] latents
        return gm.score_fn(sde)(u.reshape(u.shape[0], -1), t).reshape(u.shape)

    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, :2, :2] = True                    # block (0, 0) fully observed
    mask[:, 0, 2] = True                      # one pixel of block (0, 1)
    x0 = torch.where(mask, mu + 0.01, torch.full_like(mu, 0.9)).expand(N, 1, 4, 4)
    x, info = latent_inpaint(sde, score_fn, codec, x0, mask, sampler="ancestral", steps=100, generator=gen)
    assert x.shape == (N, 1, 4, 4) and info.options["latent_mask_observed"] == 1    # latent positions
    torch.testing.assert_close(x[:, mask], x0[:, mask], rtol=0, atol=0)   # observed pixels kept exactly
    free = ~mask
    m, v = x[:, free].mean(0), x[:, free].var(0)
    assert ((m - mu[free]).abs() < 4 * (var[free] / N).sqrt()).all(), (m, mu[free])
    assert ((v / var[free] - 1).abs() < 4 * math.sqrt(2 / N) + 0.02).all(), (v, var[free])
    levels = torch.round((x[:, free] + 1) * 256 / 2 - 0.5)
    torch.testing.assert_close(x[:, free], (2 * levels + 1) / 256 - 1)  # decoded to the 256 bin centres
