"""The network -> score parameterisation object against the exact mixture score (float64), its
labels and data units, the SDE-declared defaults, the SDE registry, and the discrete-time wrapper
against its derived error bound."""
import math
import os
import re

import pytest
import torch

import sde_lib
from models import GaussianMixture, Parameterization, ScoreMLP, get_score_fn
from models.discrete import DiscreteTimeLabel, discrete_eps_oracle, exact_eps
from sde_lib import SDE, VESDE, VPSDE, get_sde, register_sde, subVPSDE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDES = {"vp": lambda: VPSDE(), "subvp": lambda: subVPSDE(), "ve": lambda: VESDE()}
PREDICTIONS = ["eps", "x0", "v", "score_sigma", "score"]


def _mixture_params():
    w = torch.tensor([0.3, 0.7], dtype=torch.float64)
    mu = torch.tensor([[-0.5, 0.2, 0.4], [0.6, -0.3, -0.1]], dtype=torch.float64)
    cov = torch.tensor([[0.04, 0.02, 0.09], [0.01, 0.05, 0.03]], dtype=torch.float64)
    return w, mu, cov


class NetUnits(SDE):
    """The SDE seen in a network's units: u_t = (x_t - b m)/a = m u_0 + (s/a) z (an oracle helper)."""

    def __init__(self, base, a):
        super().__init__(N=base.N, T=base.T, eps=base.eps)
        self.base, self.a, self.check_time = base, a, False

    def drift_coeff(self, t):
        return self.base.drift_coeff(t)

    def diffusion_coeff(self, t):
        return self.base.diffusion_coeff(t) / self.a

    def marginal_coeffs(self, t):
        m, s = self.base.marginal_coeffs(t)
        return m, s / self.a

    def prior_std(self):
        return self.base.prior_std() / self.a


def _ideal_outputs(sde, x, t, data_range):
    """The exact network outputs of every prediction type, in the network's units, from the
    exact score of the mixture *as the network sees it* (data in its own range)."""
    w, mu, cov = _mixture_params()
    lo, hi = data_range
    a = 2.0 / (hi - lo)
    b = -1.0 - a * lo
    gm_u = GaussianMixture(w, (mu - b) / a, cov / a ** 2)       # the data in the network's units
    usde = NetUnits(sde, a)
    m, s_u = usde.marginal_coeffs(t)
    m, s_u = m[:, None], s_u[:, None]
    u = (x - b * m) / a
    score_u = gm_u.score_t(usde, u, t)
    eps = -s_u * score_u                                         # u = m u_0 + s_u z
    x0 = (u + s_u ** 2 * score_u) / m                            # Tweedie
    return u, dict(eps=eps, x0=x0, v=m * eps - s_u * x0, score_sigma=s_u * score_u, score=score_u)


@pytest.mark.parametrize("data_range", [(-1.0, 1.0), (0.0, 1.0)])
@pytest.mark.parametrize("name", list(SDES))
def test_every_prediction_gives_the_exact_score(name, data_range, gen):
    """For each prediction type the mixture's exact eps / x0 / v / sigma-scaled score / score,
    fed through the object, give the exact score of the [-1, 1] mixture to 1e-10 (float64)."""
    sde = SDES[name]()
    gm = GaussianMixture(*_mixture_params())
    B = 64
    t = sde.eps + (sde.T - sde.eps) * torch.rand(B, generator=gen, dtype=torch.float64) ** 3
    m, s = sde.marginal_coeffs(t)
    x = m[:, None] * gm.sample(B, gen) + s[:, None] * torch.randn(B, 3, generator=gen, dtype=torch.float64)
    exact = gm.score_t(sde, x, t)
    u, outputs = _ideal_outputs(sde, x, t, data_range)
    for prediction in PREDICTIONS:
        p = Parameterization(sde, prediction, "t", data_range)
        seen = {}

        def net(u_in, c, out=outputs[prediction]):
            seen["u"], seen["c"] = u_in, c
            return out
        got = p(net, x, t)
        # 1e-10 relative; x0 and v add the float64 rounding of their input amplified by the map:
        # x0 -> score multiplies by m / s_u^2 (sub-VP's s(1e-3) ~ 1e-4: x0 loses ~8 digits there)
        a = p.a
        m_, s_u = (v[:, None] for v in NetUnits(sde, a).marginal_coeffs(t))
        f = outputs[prediction]
        amp = {"x0": (u.abs() + m_ * f.abs()) / s_u ** 2,
               "v": (s_u * u.abs() + m_ * f.abs()) / (s_u * (m_ ** 2 + s_u ** 2))}.get(prediction, 0.0)
        tol = 1e-10 * exact.abs().clamp_min(1.0) + 4 * torch.finfo(torch.float64).eps * amp / a
        assert ((got - exact).abs() <= tol).all(), (name, data_range, prediction,
                                                    ((got - exact).abs() / tol).max().item())
        assert torch.allclose(seen["u"], u, rtol=0, atol=1e-14) and torch.equal(seen["c"], t)
        # target() is the inverse map: the ideal output of the exact score
        tgt = p.target(exact, x, t)
        assert ((tgt - outputs[prediction]).abs() / outputs[prediction].abs().clamp_min(1.0)).max() < 1e-10


def test_labels_in_network_units():
    t = torch.tensor([1e-5, 0.3, 1.0], dtype=torch.float64)
    ve = VESDE(sigma_min=0.02, sigma_max=100.0)          # score_sdes's VE CIFAR-10 (0.01..50 on [0, 1])
    assert torch.allclose(Parameterization(ve, "score", "sigma", (0, 1)).noise_label(t),
                          0.01 * (5000.0 ** t), rtol=1e-12)
    assert torch.allclose(Parameterization(ve, "score", "log_sigma", (0, 1)).noise_label(t),
                          math.log(0.01) + t * math.log(5000.0), rtol=1e-12)
    vp = VPSDE()
    assert torch.equal(Parameterization(vp, "eps", "t999").noise_label(t), 999 * t)
    m, s = vp.marginal_coeffs(t)
    assert torch.allclose(Parameterization(vp, "eps", "sigma").noise_label(t), s / m, rtol=1e-14)
    assert torch.allclose(Parameterization(vp, "eps", "log_sigma").noise_label(t), -vp.log_snr(t), rtol=1e-12)
    # [0, 1] data: sigma_u = s / (2 m); the discrete step sees lambda + log 2
    assert torch.allclose(Parameterization(vp, "eps", "sigma", (0, 1)).noise_label(t), s / (2 * m), rtol=1e-14)


def test_auto_is_the_sdes_declared_choice_and_the_old_rule():
    """auto = what every run before these fields used: VP/sub-VP eps with label t (score = -out/s),
    VE score_sigma with label log sigma (score = out/sigma)."""
    t = torch.tensor([0.01, 0.5], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=torch.float64)
    out = torch.tensor([[1.5, -0.2], [0.7, 0.1]], dtype=torch.float64)
    for sde, want_label, sign in ((VPSDE(), t, -1), (subVPSDE(), t, -1), (VESDE(), None, 1)):
        p = Parameterization(sde)
        _, s = sde.marginal_coeffs(t)
        label = torch.log(sde.sigma(t)) if want_label is None else want_label
        assert torch.equal(p.noise_label(t), label)
        assert torch.equal(p.score(out, x, t), sign * out / s[:, None])


@register_sde("test_ou_sde")
class _OU(SDE):
    """A registered SDE without a declared parameterisation: dx = -x/2 dt + dw (VP with beta = 1)."""

    def __init__(self, N: int = 100, eps: float = 1e-3):
        super().__init__(N=N, eps=eps)

    def drift_coeff(self, t):
        return -0.5 * torch.ones_like(t)

    def diffusion_coeff(self, t):
        return torch.ones_like(t)

    def marginal_coeffs(self, t):
        m = torch.exp(-0.5 * t)
        return m, torch.sqrt(-torch.expm1(-t))

    def prior_std(self):
        return 1.0


def test_a_new_sde_is_one_class_and_one_registration_and_never_silently_vp():
    import ml_collections
    sde = get_sde(ml_collections.ConfigDict({"name": "TEST_OU_SDE", "N": 50, "beta_min": 0.3}))
    assert isinstance(sde, _OU) and sde.N == 50 and "test_ou_sde" in sde_lib.sde_names()
    net = ScoreMLP(dim=2, hidden=8, num_blocks=1)
    with pytest.raises(ValueError, match="_OU declares no default network parameterisation"):
        get_score_fn(sde, net)
    score_fn = get_score_fn(sde, net, parameterization=Parameterization(sde, "eps", "t"))
    assert score_fn(torch.zeros(3, 2), torch.full((3,), 0.5)).shape == (3, 2)
    with pytest.raises(ValueError, match="no discrete-time chain"):
        Parameterization(sde, "eps", "discrete_step")
    with pytest.raises(ValueError, match=r"unknown SDE name 'nope'; expected one of \[.*'vpsde'"):
        get_sde(ml_collections.ConfigDict({"name": "nope"}))
    with pytest.raises(ValueError, match="already registered"):
        register_sde("vpsde")(_OU)


@pytest.mark.parametrize("field,value,message", [
    ("prediction", "noise", r"config.model.prediction must be one of \['auto', 'eps', .*got 'noise'"),
    ("label", "time", r"config.model.label must be one of \['auto', 't', .*got 'time'"),
    ("data_range", (0, 255), r"config.model.data_range must be one of \[\[-1.0, 1.0\], \[0.0, 1.0\]\], got \(0, 255\)"),
])
def test_bad_fields_name_field_value_and_expectation(field, value, message):
    kw = dict(prediction="auto", label="auto", data_range=(-1, 1))
    kw[field] = value
    with pytest.raises(ValueError, match=message):
        Parameterization(VPSDE(), **kw)


def test_get_model_records_the_choice_through_wrappers_and_copies():
    import copy
    from configs.default import get_default_config
    from models import get_model, parameterization_of
    c = get_default_config()
    c.model.name, c.data.dim, c.model.hidden, c.model.num_blocks = "mlp", 2, 8, 1
    c.model.prediction, c.model.label = "x0", "t999"
    net = get_model(c)
    wrapped = torch.nn.Module()
    wrapped.module = copy.deepcopy(net)                 # an EMA copy inside a DDP-like wrapper
    p = parameterization_of(VPSDE(), wrapped)
    assert (p.prediction, p.label, p.data_range) == ("x0", "t999", (-1.0, 1.0))
    assert "parameterization" not in str(list(net.state_dict()))      # checkpoints unchanged


def test_no_sde_class_branches_outside_sde_lib():
    """Nothing outside sde_lib asks which SDE it holds (isinstance on the SDE classes, class names)."""
    pat = re.compile(r"isinstance\([^)]*\b(VPSDE|subVPSDE|VESDE|SDE)\b|__name__\s*==\s*[\"'](VPSDE|subVPSDE|VESDE)"
                     r"|type\([^)]*\)\s*(is|==)\s*(VPSDE|subVPSDE|VESDE)")
    hits, scanned = [], 0
    for dirpath, dirs, files in os.walk(ROOT):
        rel = os.path.relpath(dirpath, ROOT).split(os.sep)[0]
        if rel != "." and (rel in ("sde_lib", "tests", "runs") or rel.startswith(".")):
            dirs[:] = []
            continue
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                for i, line in enumerate(open(path, encoding="utf-8"), 1):
                    if pat.search(line):
                        hits.append(f"{os.path.relpath(path, ROOT)}:{i}: {line.strip()}")
                scanned += 1
    assert scanned > 50 and not hits, "\n".join(hits)


# ---- discrete-time models ----------------------------------------------------------------------
def test_discrete_time_wrapper_meets_its_interpolation_bound(gen):
    """Through the log-SNR wrapper a discrete eps model built from the exact eps at N = 50 DDPM
    steps gives a score within 1/2 (lambda_j - lambda)(lambda - lambda_{j+1}) max|g''| / s(t)
    of the exact score (the bound of models/discrete.py, g(lambda) = eps*(x, lambda)); below the
    first step (clamp) within (lambda - lambda_0) max|g'| / s(t). The bounds are tight."""
    sde = VPSDE(N=50)
    gm = GaussianMixture(*_mixture_params())
    table = sde.discrete_log_snrs()
    p = Parameterization(sde, "eps", "discrete_step")
    net = discrete_eps_oracle(gm, table)
    lam0, lamN = table[0].item(), table[-1].item()
    t_first = sde.t_from_log_snr(torch.tensor([lam0], dtype=torch.float64)).item()
    B = 200
    t_in = t_first + (1.0 - t_first) * torch.rand(B, generator=gen, dtype=torch.float64)
    t_in = t_in[sde.log_snr(t_in) > lamN]
    t_below = torch.exp(math.log(1e-5) + (math.log(t_first) - math.log(1e-5))
                        * torch.rand(50, generator=gen, dtype=torch.float64))
    for t, region in ((t_in, "inside"), (t_below, "below")):
        m, s = sde.marginal_coeffs(t)
        x = m[:, None] * gm.sample(t.numel(), gen) + s[:, None] * torch.randn(t.numel(), 3, generator=gen,
                                                                               dtype=torch.float64)
        err = (p(net, x, t) - gm.score_t(sde, x, t)).abs()
        lam = sde.log_snr(t)
        k = p.noise_label(t)
        if region == "inside":
            j = k.floor().long().clamp(max=table.numel() - 2)
            hi_, lo_ = table[j], table[j + 1]
            grid = lo_[:, None] + (hi_ - lo_)[:, None] * torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
            d = 1e-3
            g2 = torch.stack([(exact_eps(gm, x, g + d) - 2 * exact_eps(gm, x, g)
                               + exact_eps(gm, x, g - d)) / d ** 2 for g in grid.T]).abs().amax(0)
            bound = 0.5 * ((hi_ - lam) * (lam - lo_))[:, None] * g2 / s[:, None]
        else:
            assert torch.equal(k, torch.zeros_like(k))                       # the clamp at step 0
            mis = DiscreteTimeLabel(table).mismatch(lam)
            assert torch.allclose(mis, lam - lam0, rtol=1e-12) and (mis > 0).all()
            grid = lam0 + (lam - lam0)[:, None] * torch.linspace(0, 1, 25, dtype=torch.float64)
            d = 1e-4
            g1 = torch.stack([(exact_eps(gm, x, g + d) - exact_eps(gm, x, g - d)) / (2 * d)
                              for g in grid.T]).abs().amax(0)
            bound = (lam - lam0)[:, None] * g1 / s[:, None]
        ratio = (err / (bound + 1e-12)).max().item()
        assert ratio <= 1.05, (region, ratio)
        assert ratio > 0.3, (region, ratio)                     # the bound is not vacuous


def test_discrete_label_round_trips_integer_steps():
    for sde in (VPSDE(), VESDE()):
        table = sde.discrete_log_snrs()
        d = DiscreteTimeLabel(table)
        k = torch.tensor([0.0, 1.0, 17.0, 998.0, 999.0, 412.25], dtype=torch.float64)
        assert torch.allclose(d.step(d.log_snr_at(k)), k, atol=1e-9)
    # VP 0.1..20 with N = 1000 is DDPM's chain: beta_k = linspace(1e-4, 0.02, 1000)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    assert torch.allclose(VPSDE().discrete_log_snrs(), 0.5 * torch.log(abar / (1 - abar)), rtol=1e-12)
    with pytest.raises(ValueError, match="strictly decreasing"):
        DiscreteTimeLabel(torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("argv,message", [
    (["--config.model.prediction=noise"], "config.model.prediction must be one of ['auto', 'eps', 'score', "
                                          "'score_sigma', 'v', 'x0'], got 'noise'"),
    (["--config.model.data_range=(0, 255)"], "config.model.data_range must be one of [[-1.0, 1.0], [0.0, 1.0]], "
                                             "got (0, 255)"),
    (["--config.sde.name=subvpsde", "--config.model.label=discrete_step"],
     "config.model.label must be a continuous-time label: subVPSDE has no discrete-time chain, got 'discrete_step'"),
])
def test_cli_refuses_bad_parameterisation_in_one_line(argv, message, tmp_path, capsys):
    import run
    assert run.main(["--workdir", str(tmp_path / "w"), "--mode", "train"] + argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n" and not os.path.exists(tmp_path / "w")
