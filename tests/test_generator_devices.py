"""Random draws happen on the device of the generator that makes them (torch refuses a generator of
another device, so a CUDA generator must draw on CUDA and a CPU one on the CPU) and are moved to the
data afterwards. There is no GPU here, so this checks the contract on every draw: each one uses the
caller's generator and happens on that generator's device."""
import pytest
import torch

from sde_lib import VPSDE
from solvers import TimeProposal, elbo, log_likelihood
from solvers._common import hutchinson_probes

DRAWS = ("randn", "rand", "randint", "multinomial")


class OtherDeviceGenerator(torch.Generator):
    """A CPU generator that says it lives on the meta device: a stand-in for a CUDA generator."""
    @property
    def device(self):
        return torch.device("meta")


@pytest.fixture
def draws(monkeypatch):
    """Records (generator, device of the draw) for every torch random draw."""
    log = []
    for name in DRAWS:
        real = getattr(torch, name)

        def spy(*args, _real=real, _name=name, **kw):
            g = kw.get("generator")
            if _name == "multinomial":
                where = args[0].device
            else:
                where = torch.device(kw.get("device") or "cpu")
            log.append((_name, g, where))
            return _real(*args, **kw)
        monkeypatch.setattr(torch, name, spy)
    return log


def test_time_proposal_draws_on_the_generators_device(draws):
    prop = TimeProposal(VPSDE(), 1e-3)
    g = OtherDeviceGenerator().manual_seed(0)
    t, p = prop.sample(16, g, torch.float32, device="meta")
    assert t.device.type == "meta" and p.shape == (16,)
    assert draws and all(gen is g and where == g.device for _, gen, where in draws), draws


def test_hutchinson_probes_draw_on_the_generators_device(draws):
    g = OtherDeviceGenerator().manual_seed(0)
    for noise in ("rademacher", "gaussian"):
        v = hutchinson_probes((2, 3), noise, g, torch.float32, "meta")
        assert v.device.type == "meta"
    assert len(draws) == 2 and all(gen is g and where == g.device for _, gen, where in draws), draws


@pytest.mark.parametrize("trace", ["hutchinson", "exact"])
def test_elbo_and_likelihood_draw_only_with_the_callers_generator(draws, trace):
    sde, g = VPSDE(), torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    draws.clear()
    res = elbo(sde, lambda x, t: -x, x, n_t=4, trace=trace, generator=g, prior_logp=lambda z: -0.5 * (z ** 2).sum(1))
    assert torch.isfinite(res.value).all()
    log_likelihood(sde, lambda x, t: -x, x, trace="hutchinson", rtol=1e-3, atol=1e-3, generator=g)
    kinds = {k for k, _, _ in draws}
    assert {"multinomial", "rand", "randn"} <= kinds
    assert all(gen is g and where == g.device for _, gen, where in draws), draws
