"""Helpers shared by the solver tests: check samples against an exact Gaussian mixture."""
import torch

from solvers import sliced_wasserstein


def mixture_report(x, gm, gen, n_ref=None):
    """Statistics of samples x `[n, D]` against the mixture gm (float64).

    Returns a dict with: sw (sliced W1 to fresh true samples), sw_ref (between two
    fresh true sets of the same size), freq (assigned component frequencies),
    mean_err / cov_err (max abs error of mean and covariance).
    """
    x = x.reshape(x.shape[0], -1).double()
    n = x.shape[0]
    # The sliced W1 between finite sample sets fluctuates by ~30%: average it over
    # several fresh reference sets (and, for the baseline, over several true pairs).
    refs = [gm.sample(n, generator=gen).double() for _ in range(4)]
    proj = lambda: torch.Generator().manual_seed(1)
    sw = sum(sliced_wasserstein(x, r, generator=proj()) for r in refs[:2]) / 2
    sw_ref = sum(sliced_wasserstein(refs[i], refs[j], generator=proj()) for i, j in [(0, 1), (2, 3), (0, 2)]) / 3
    # component assignment by posterior responsibility under the data mixture
    log_w = gm.weights.log()
    comp = []
    for k in range(gm.K):
        cov = gm.covs[k]
        d = torch.distributions.MultivariateNormal(gm.means[k], covariance_matrix=cov + 1e-9 * torch.eye(gm.D, dtype=torch.float64))
        comp.append(log_w[k] + d.log_prob(x))
    labels = torch.stack(comp, 1).argmax(1)
    freq = torch.bincount(labels, minlength=gm.K).double() / n
    mean = (gm.weights[:, None] * gm.means).sum(0)
    second = (gm.weights[:, None, None] * (gm.covs + gm.means[:, :, None] * gm.means[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    return {"sw": sw, "sw_ref": sw_ref, "freq": freq, "weights": gm.weights,
            "mean_err": (x.mean(0) - mean).abs().max().item(),
            "cov_err": (torch.cov(x.T) - cov).abs().max().item(),
            "n": n, "scale": cov.diagonal().max().sqrt().item()}


def assert_matches_mixture(x, gm, gen, sw_factor=2.0, label=""):
    """Decisive check: finite samples, component frequencies within 5 binomial standard
    errors, mean/cov within 6 standard errors, sliced W1 within sw_factor of two true sets."""
    r = mixture_report(x, gm, gen)
    assert torch.isfinite(x).all(), f"{label}: non-finite samples"
    se = (r["weights"] * (1 - r["weights"]) / r["n"]).sqrt()
    assert ((r["freq"] - r["weights"]).abs() <= 5 * se + 0.005).all(), \
        f"{label}: component frequencies {r['freq'].tolist()} vs weights {r['weights'].tolist()}"
    tol_mean = 6 * r["scale"] / r["n"] ** 0.5
    assert r["mean_err"] < tol_mean, f"{label}: mean error {r['mean_err']:.4f} > {tol_mean:.4f}"
    tol_cov = 8 * r["scale"] ** 2 / r["n"] ** 0.5
    assert r["cov_err"] < tol_cov, f"{label}: covariance error {r['cov_err']:.4f} > {tol_cov:.4f}"
    assert r["sw"] < sw_factor * r["sw_ref"], \
        f"{label}: sliced W1 {r['sw']:.4f} > {sw_factor} x reference {r['sw_ref']:.4f}"
    return r
