"""The likelihood baselines of --mode eval against closed forms."""
import math

import pytest
import torch

from solvers.baselines import gaussian_fit, gaussian_logp, per_pixel_categorical


def test_per_pixel_categorical_counts_with_smoothing():
    # 1 dimension, 3 levels, train counts (2, 1, 0): P = (2.5, 1.5, 0.5) / 4.5 with alpha = 0.5
    tr = torch.tensor([[0], [0], [1]])
    te = torch.tensor([[0], [1], [2]])
    got = per_pixel_categorical(tr, te, 3, alpha=0.5)
    torch.testing.assert_close(got, -torch.log2(torch.tensor([2.5, 1.5, 0.5], dtype=torch.float64) / 4.5))


def test_per_pixel_categorical_reaches_the_entropy():
    """Independent dimensions with known categoricals: with much training data, the test bits/dim
    is the mean entropy of the dimensions."""
    g = torch.Generator().manual_seed(0)
    D, L = 5, 7
    P = torch.distributions.Dirichlet(torch.ones(L, dtype=torch.float64)).sample((D,))
    H = -(P * P.log2()).sum(1).mean().item()
    draw = lambda n: torch.stack([torch.multinomial(P[j], n, True, generator=g) for j in range(D)], 1)
    bpd = per_pixel_categorical(draw(200000), draw(50000), L)
    assert bpd.mean().item() == pytest.approx(H, abs=4 * bpd.std().item() / math.sqrt(50000) + 1e-3)
    with pytest.raises(ValueError, match="levels must lie in 0..6"):
        per_pixel_categorical(draw(10), draw(10) + 1, L)
    with pytest.raises(ValueError, match="alpha"):
        per_pixel_categorical(draw(10), draw(10), L, alpha=0)


def test_gaussian_baseline_closed_form():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = A @ A.t() + 0.1 * torch.eye(4, dtype=torch.float64)
    mu = torch.randn(4, generator=g, dtype=torch.float64)
    x = mu + torch.randn(200000, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).t()
    m, c = gaussian_fit(x)
    torch.testing.assert_close(c, cov, atol=0.05, rtol=0.02)
    truth = torch.distributions.MultivariateNormal(mu, cov).log_prob(x[:100])
    torch.testing.assert_close(gaussian_logp(x[:100], m, c), truth, atol=0.02, rtol=0)
    # bin centres on a grid of width w: the dequantised covariance adds w^2 / 12 per dimension
    _, c2 = gaussian_fit(x, bin_width=0.5)
    torch.testing.assert_close(c2 - c, torch.eye(4, dtype=torch.float64) * 0.25 / 12)


def test_gaussian_baseline_not_applicable_with_fewer_examples_than_dimensions():
    """N - 1 < D: the sample covariance has rank <= N - 1, so the baseline is reported as not
    applicable with that reason instead of a number in the thousands (the issue's 17,345.9 bits/dim)."""
    from solvers.baselines import gaussian_not_applicable
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 256, generator=g, dtype=torch.float64)
    _, cov = gaussian_fit(x, bin_width=2 / 256)
    reason = gaussian_not_applicable(40, cov, dequantized=True)
    assert reason and "40 examples for D = 256" in reason and "rank at most 39" in reason
    _, cov = gaussian_fit(torch.randn(300, 8, generator=g, dtype=torch.float64))
    assert gaussian_not_applicable(300, cov, dequantized=False) is None
    cov[:, 0] = cov[0, :] = 0.0                                   # a constant coordinate, no dequantisation
    assert "singular (rank 7 of D = 8)" in gaussian_not_applicable(300, cov, dequantized=False)


def test_eval_reports_the_singular_gaussian_baseline(tmp_path, capsys):
    """End to end: 50 images of 8x8 (40 train, D = 64 > 39) -> eval.json has no Gaussian number and says why."""
    import glob
    import json

    import numpy as np

    import run
    path = tmp_path / "imgs.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (50, 8, 8), dtype=np.uint8))
    wd = str(tmp_path / "wd")
    args = ["--workdir", wd, "--config.data.dataset=array", f"--config.data.path={path}",
            "--config.data.image_size=8", "--config.data.num_channels=1", "--config.model.nf=8",
            "--config.training.n_iters=1", "--config.training.num_threads=1", "--config.training.progress=False",
            "--config.eval.num_samples=2", "--config.eval.repeats=1", "--config.eval.estimator=elbo",
            "--config.eval.elbo_n_t=2"]
    assert run.main(args + ["--mode", "train"]) == 0
    assert run.main(args + ["--mode", "eval"]) == 0
    ev = json.load(open(glob.glob(f"{wd}/eval/*/eval.json")[0]))
    assert ev["baselines"]["gaussian"] is None and "rank at most" in ev["baselines_not_applicable"]["gaussian"]
    assert ev["baselines"]["per_pixel"] > 0
    assert "gaussian   not applicable" in capsys.readouterr().out
