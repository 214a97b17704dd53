"""Colourisation on real colour data (the embedded `sample_patches`), judged against closed forms.

The patches are average-pooled to 4x4 RGB (48 values) and a full-covariance Gaussian N(mu, S) is fitted
to the train split. With its exact score, `colorize` samples x given the grey image y = A x (A: the
per-pixel channel mean). For a sample drawn from the Gaussian's conditional p(x | y) independently of the
true patch x*, E||x_s - x*||^2 = E||m(y) - x*||^2 + tr C, with m(y) = mu + S A^T (A S A^T)^-1 (y - A mu)
and C = S - S A^T (A S A^T)^-1 A S, whatever the true data distribution is."""
import torch
import torch.nn.functional as F

from configs.default import get_default_config
from models.analytic import GaussianMixture
from sde_lib import VPSDE
from solvers import colorize
from training.data import get_dataset

F64 = torch.float64


def _pooled_patches():
    cfg = get_default_config()
    cfg.data.dataset, cfg.data.image_size, cfg.data.num_channels = "sample_patches", 32, 3
    ds = get_dataset(cfg)
    return F.avg_pool2d(ds.train.double(), 8), F.avg_pool2d(ds.test.double(), 8)


def test_colorize_sample_patches_against_the_gaussian_conditional():
    train, test = _pooled_patches()                        # [N, 3, 4, 4]
    D = 48
    X = train.reshape(-1, D)
    mu, S = X.mean(0), torch.cov(X.T) + 1e-4 * torch.eye(D, dtype=F64)
    A = torch.zeros(16, D, dtype=F64)                      # grey = channel mean per pixel
    for c in range(3):
        A[torch.arange(16), c * 16 + torch.arange(16)] = 1 / 3
    K = S @ A.T @ torch.linalg.inv(A @ S @ A.T)
    C = S - K @ A @ S
    truth = test[:500]
    y = truth.mean(1, keepdim=True)                        # [n, 1, 4, 4]
    m = mu + (y.reshape(-1, 16) - A @ mu) @ K.T             # closed-form conditional means [n, 48]
    sde = VPSDE()
    gm = GaussianMixture([1.0], mu[None], S[None])
    x, _ = colorize(sde, gm.score_fn(sde), y, num_channels=3, sampler="ancestral", steps=200,
                    generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(1, keepdim=True), y, rtol=0, atol=1e-10)        # the grey is kept
    err = (x.reshape(-1, D) - truth.reshape(-1, D)).square().sum(1)
    want = (m - truth.reshape(-1, D)).square().sum(1) + C.trace()
    grey_only = (y.expand(-1, 3, -1, -1) - truth).reshape(-1, D).square().sum(1)  # colour = grey: the baseline
    diff = err - want
    se = diff.std() / diff.numel() ** 0.5
    print(f"sample MSE {err.mean():.4f}, closed form {want.mean():.4f} (+- {se:.4f}), grey {grey_only.mean():.4f}")
    assert abs(diff.mean()) < 4 * se
    spread = (x.reshape(-1, D) - m).square().sum(1)          # E||x_s - m(y)||^2 = tr C: the conditional's spread
    print(f"spread {spread.mean():.4f} +- {spread.std() / spread.numel() ** 0.5:.4f}, tr C {C.trace():.4f}")
    assert abs(spread.mean() - C.trace()) < 4 * spread.std() / spread.numel() ** 0.5
