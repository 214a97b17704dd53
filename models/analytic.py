"""The exact-score oracle: a Gaussian mixture pushed through an SDE's perturbation kernel.

Under any SDE with Gaussian kernel p_0t(x_t | x_0) = N(m(t) x_0, s(t)^2 I) a
Gaussian mixture stays a Gaussian mixture:

    p_t(x) = sum_k w_k N(x; m(t) mu_k, m(t)^2 Sigma_k + s(t)^2 I).

Writing Sigma_k = U_k diag(lam_k) U_k^T once (eigendecomposition at
construction), every component covariance at time t is
U_k diag(m^2 lam_k + s^2) U_k^T, so its inverse and log-determinant cost
O(D) per component and per sample, with a different t for every sample:

    log N_k(x) = -1/2 [D log 2 pi + sum_j log v_kj + sum_j y_kj^2 / v_kj],
    y_k = U_k^T (x - m mu_k),  v_k = m^2 lam_k + s^2,
    score(x)   = -sum_k r_k(x) U_k (y_k / v_k),  r_k = softmax_k(log w_k + log N_k).

Data of any shape `[B, *dims]` is flattened row-major to `[B, D]` with
D = prod(dims) (an image `[B, C, H, W]` maps to the mixture's vector index
c*H*W + h*W + w), and scores come back in the shape of the input.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch

Tensor = torch.Tensor


def _as_tensor(name: str, value, dtype=torch.float64) -> Tensor:
    t = torch.as_tensor(value).to(dtype)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return t


class GaussianMixture:
    """Mixture sum_k w_k N(mu_k, Sigma_k) in R^D with exact log-density, score and samples.

    Args:
        weights: `[K]` non-negative, normalised here (must sum to > 0).
        means:   `[K, D]`.
        covs:    `[K, D, D]` symmetric positive semi-definite, or `[K, D]`
                 diagonal variances. Singular covariances (down to point
                 masses, covs = 0) are allowed: the mixture at any t with
                 s(t) > 0 is non-degenerate; `log_prob`/`score` of a singular
                 mixture itself (s = 0) raise ValueError.
        dtype:   dtype of `sample()` output; default: the dtype of `means`
                 if it is a floating tensor, else torch's default dtype.
                 Parameters are kept in float64; computations run in the
                 dtype of the input x.
    """

    def __init__(self, weights, means, covs, dtype: Optional[torch.dtype] = None):
        if dtype is None:
            dtype = means.dtype if torch.is_tensor(means) and means.is_floating_point() else torch.get_default_dtype()
        self.dtype = dtype
        w = _as_tensor("weights", weights)
        mu = _as_tensor("means", means)
        cov = _as_tensor("covs", covs)
        if mu.dim() != 2:
            raise ValueError(f"means must have shape [K, D], got shape {tuple(mu.shape)}")
        K, D = mu.shape
        if w.shape != (K,):
            raise ValueError(f"weights must have shape [K] = [{K}] to match means, got shape {tuple(w.shape)}")
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {w.tolist()}")
        self.weights = w / w.sum()
        self.means = mu
        self.K, self.D = K, D
        if cov.shape == (K, D):
            if (cov < 0).any():
                raise ValueError(f"diagonal covs must be >= 0, got min {cov.min().item()}")
            self.diagonal = True
            self.eigvals = cov.clone()
            self.eigvecs = None
        elif cov.shape == (K, D, D):
            if not torch.allclose(cov, cov.transpose(1, 2), atol=1e-10, rtol=1e-8):
                raise ValueError("full covs must be symmetric, got a non-symmetric matrix")
            lam, U = torch.linalg.eigh(cov)
            tol = 1e-10 * lam.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
            if (lam < -tol).any():
                raise ValueError(f"full covs must be positive semi-definite, got eigenvalue {lam.min().item()}")
            self.diagonal = False
            self.eigvals = lam.clamp(min=0.0)
            self.eigvecs = U
        else:
            raise ValueError(f"covs must have shape [K, D, D] = [{K}, {D}, {D}] or [K, D] = [{K}, {D}], "
                             f"got shape {tuple(cov.shape)}")
        self.singular = bool((self.eigvals == 0).any())
        self._cache = {}

    # ---- construction helpers ---------------------------------------------------------
    @property
    def covs(self) -> Tensor:
        """Full covariances `[K, D, D]` (float64)."""
        if self.diagonal:
            return torch.diag_embed(self.eigvals)
        return self.eigvecs @ torch.diag_embed(self.eigvals) @ self.eigvecs.transpose(1, 2)

    def _params(self, dtype, device):
        key = (dtype, device)
        if key not in self._cache:
            U = None if self.diagonal else self.eigvecs.to(dtype=dtype, device=device)
            self._cache[key] = (self.weights.log().to(dtype=dtype, device=device),
                                self.means.to(dtype=dtype, device=device),
                                self.eigvals.to(dtype=dtype, device=device), U)
        return self._cache[key]

    # ---- core: log-density and score with per-sample (m, s) ------------------------------
    def _logp_and_score(self, x: Tensor, m: Tensor, s: Tensor, want_score: bool):
        """log p and score of sum_k w_k N(m mu_k, m^2 Sigma_k + s^2 I) at x `[B, D]`, m, s `[B]`."""
        joint, y, var, U = self._joint(x, m, s)                                 # [B, K], [B, K, D] x 2
        logp = torch.logsumexp(joint, dim=1)
        if not want_score:
            return logp, None
        r = torch.softmax(joint, dim=1)                                         # [B, K]
        u = r[:, :, None] * y / var                                             # [B, K, D]
        if U is not None:
            u = torch.einsum("bke,kde->bkd", u, U)
        return logp, -u.sum(dim=1)

    def _flatten(self, x: Tensor) -> Tensor:
        if not torch.is_tensor(x) or x.dim() < 2:
            raise ValueError(f"x must be a tensor of shape [B, *dims] with prod(dims) = D = {self.D}, "
                             f"got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.D:
            raise ValueError(f"x must have prod(dims) = D = {self.D}, got shape {tuple(x.shape)}")
        return flat

    def _check_nonsingular(self, s: Tensor):
        if self.singular and (s <= 0).any():
            raise ValueError("this mixture has a singular covariance: its density and score exist only "
                             "for s(t) > 0 (t > 0 under VP/sub-VP)")

    # ---- the data distribution ------------------------------------------------------------
    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) in nats, `[B]`."""
        flat = self._flatten(x)
        ones = torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device)
        self._check_nonsingular(torch.zeros_like(ones))
        return self._logp_and_score(flat, ones, torch.zeros_like(ones), False)[0]

    def score(self, x: Tensor) -> Tensor:
        """grad_x log p(x), shape of x."""
        flat = self._flatten(x)
        ones = torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device)
        self._check_nonsingular(torch.zeros_like(ones))
        return self._logp_and_score(flat, ones, torch.zeros_like(ones), True)[1].reshape(x.shape)

    def sample(self, n: int, generator: Optional[torch.Generator] = None, dtype: Optional[torch.dtype] = None,
               return_labels: bool = False):
        """n i.i.d. draws `[n, D]` (and the component labels `[n]` if return_labels)."""
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        dtype = dtype or self.dtype
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.D, generator=generator, dtype=torch.float64)
        z = z * self.eigvals[labels].sqrt()
        if not self.diagonal:
            z = torch.einsum("nde,ne->nd", self.eigvecs[labels], z)
        x = (self.means[labels] + z).to(dtype)
        return (x, labels) if return_labels else x

    # ---- pushed through an SDE -------------------------------------------------------------
    def marginal(self, sde, t: Union[float, Tensor]) -> "GaussianMixture":
        """The mixture p_t at one time t: weights w_k, means m(t) mu_k, covs m(t)^2 Sigma_k + s(t)^2 I."""
        tt = torch.as_tensor(t, dtype=torch.float64).reshape(1)
        m, s = (v.item() for v in sde.marginal_coeffs(tt))
        if not (0.0 <= tt.item() <= sde.T):
            raise ValueError(f"t must lie in [0, T] = [0, {sde.T}], got {tt.item()}")
        out = GaussianMixture.__new__(GaussianMixture)
        out.dtype, out.K, out.D, out.diagonal = self.dtype, self.K, self.D, self.diagonal
        out.weights, out.means = self.weights, m * self.means
        out.eigvals, out.eigvecs = m ** 2 * self.eigvals + s ** 2, self.eigvecs
        out.singular = bool((out.eigvals == 0).any())
        out._cache = {}
        return out

    def _coeffs(self, sde, x: Tensor, t: Tensor):
        if not torch.is_tensor(t) or t.shape != (x.shape[0],):
            raise ValueError(f"t must be a tensor of shape [B] = [{x.shape[0]}], "
                             f"got {tuple(t.shape) if torch.is_tensor(t) else type(t).__name__}")
        if sde.check_time:
            sde._check_t(t, x)
        m, s = sde.marginal_coeffs(t.to(x.dtype))
        self._check_nonsingular(s)
        return m, s

    def log_prob_t(self, sde, x: Tensor, t: Tensor) -> Tensor:
        """log p_t(x) in nats, `[B]`, with a time per sample (`t` `[B]`)."""
        flat = self._flatten(x)
        m, s = self._coeffs(sde, flat, t)
        return self._logp_and_score(flat, m, s, False)[0]

    def score_t(self, sde, x: Tensor, t: Tensor) -> Tensor:
        """The exact score grad_x log p_t(x), shape of x, with a time per sample."""
        flat = self._flatten(x)
        m, s = self._coeffs(sde, flat, t)
        return self._logp_and_score(flat, m, s, True)[1].reshape(x.shape)

    def score_fn(self, sde) -> Callable[[Tensor, Tensor], Tensor]:
        """The exact score function of p_t under `sde`, satisfying the score_fn contract."""
        def score_fn(x: Tensor, t: Tensor) -> Tensor:
            return self.score_t(sde, x, t)
        score_fn.mixture = self
        score_fn.sde = sde
        return score_fn

    # ---- conditionals: components, noisy classifier, observed coordinates -----------------
    def _subset(self, weights: Tensor, means: Tensor, eigvals: Tensor, eigvecs: Optional[Tensor]) -> "GaussianMixture":
        out = GaussianMixture.__new__(GaussianMixture)
        out.dtype, out.K, out.D, out.diagonal = self.dtype, means.shape[0], means.shape[1], eigvecs is None
        out.weights, out.means, out.eigvals, out.eigvecs = weights, means, eigvals, eigvecs
        out.singular = bool((eigvals == 0).any())
        out._cache = {}
        return out

    def component(self, k: int) -> "GaussianMixture":
        """The k-th component N(mu_k, Sigma_k) as a one-component mixture: p(x | y = k)."""
        if isinstance(k, bool) or not isinstance(k, int) or not (0 <= k < self.K):
            raise ValueError(f"component index k must be an int in [0, K) = [0, {self.K}), got {k!r}")
        U = None if self.diagonal else self.eigvecs[k:k + 1]
        return self._subset(torch.ones(1, dtype=torch.float64), self.means[k:k + 1], self.eigvals[k:k + 1], U)

    def log_posterior_t(self, sde, x: Tensor, t: Tensor) -> Tensor:
        """Exact noisy responsibilities log p_t(y = k | x) `[B, K]` (Bayes' rule on the components of p_t).

        Differentiable in x; grad_x log p_t(y = k | x) = score of component k - score of the mixture.
        """
        flat = self._flatten(x)
        m, s = self._coeffs(sde, flat, t)
        return torch.log_softmax(self._joint(flat, m, s)[0], dim=1)

    def _joint(self, x: Tensor, m: Tensor, s: Tensor):
        """(log w_k + log N(x; m mu_k, m^2 Sigma_k + s^2 I) `[B, K]`, y = U_k^T (x - m mu_k) `[B, K, D]`,
        v = m^2 lam_k + s^2 `[B, K, D]`, U)."""
        log_w, mu, lam, U = self._params(x.dtype, x.device)
        diff = x[:, None, :] - m[:, None, None] * mu[None]
        y = diff if U is None else torch.einsum("bkd,kde->bke", diff, U)
        var = (m ** 2)[:, None, None] * lam[None] + (s ** 2)[:, None, None]
        log_comp = -0.5 * (self.D * math.log(2 * math.pi) + var.log().sum(-1) + (y ** 2 / var).sum(-1))
        return log_w[None] + log_comp, y, var, U

    def classifier_fn(self, sde) -> Callable[[Tensor, Tensor], Tensor]:
        """The exact noise-conditional classifier `fn(x, t) -> [B, K]` = log p_t(y = k | x) under `sde`."""
        def classifier_fn(x: Tensor, t: Tensor) -> Tensor:
            return self.log_posterior_t(sde, x, t)
        classifier_fn.mixture = self
        classifier_fn.sde = sde
        return classifier_fn

    def condition(self, mask, values) -> "GaussianMixture":
        """The exact mixture of the unobserved coordinates given the observed ones.

        mask:   bool `[D]` (or any shape with D elements, flattened row-major), True = observed.
        values: the observed values, either a full `[D]` vector (only entries where mask is
                True are read) or the `[n_obs]` observed entries in index order.

        Per component (o = observed, u = unobserved), Gaussian conditioning:
            mu_k|o  = mu_u + S_uo S_oo^{-1} (v - mu_o),   S_k|o = S_uu - S_uo S_oo^{-1} S_ou,
        and Bayes' rule on the weights: w_k|o  propto  w_k N(v; mu_o, S_oo).
        Returns a `GaussianMixture` in R^{D - n_obs} (full covariances unless diagonal).
        """
        mask_t = torch.as_tensor(mask)
        if mask_t.dtype != torch.bool or mask_t.numel() != self.D:
            raise ValueError(f"mask must be a bool tensor with D = {self.D} elements (True = observed), "
                             f"got dtype {mask_t.dtype} with {mask_t.numel()} elements")
        obs = mask_t.reshape(-1)
        n_obs = int(obs.sum())
        if n_obs == self.D:
            raise ValueError("mask observes every coordinate; nothing is left to condition on the observations")
        v = _as_tensor("values", values).reshape(-1)
        if v.numel() == self.D:
            v = v[obs]
        elif v.numel() != n_obs:
            raise ValueError(f"values must have D = {self.D} entries or one per observed coordinate "
                             f"({n_obs}), got {v.numel()}")
        if n_obs == 0:
            return self._subset(self.weights, self.means, self.eigvals, self.eigvecs)
        S = self.covs
        So, Su = S[:, obs][:, :, obs], S[:, ~obs][:, :, ~obs]
        Suo = S[:, ~obs][:, :, obs]
        L, info = torch.linalg.cholesky_ex(So)
        if (info != 0).any():
            raise ValueError("the observed block of a component covariance is singular; condition on a "
                             "marginal at t > 0 (gm.marginal(sde, t)) or observe fewer coordinates")
        r = (v[None] - self.means[:, obs])[:, :, None]                                  # [K, o, 1]
        a = torch.cholesky_solve(r, L)                                                    # S_oo^{-1} r
        means = self.means[:, ~obs] + (Suo @ a)[:, :, 0]
        covs = Su - Suo @ torch.cholesky_solve(Suo.transpose(1, 2), L)
        covs = 0.5 * (covs + covs.transpose(1, 2))
        logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(-1)
        log_lik = -0.5 * (n_obs * math.log(2 * math.pi) + logdet + (r * a).sum((1, 2)))
        log_w = self.weights.log() + log_lik
        w = torch.exp(log_w - torch.logsumexp(log_w, 0))
        if self.diagonal:
            return self._subset(w, means, torch.diagonal(covs, dim1=1, dim2=2).clamp(min=0.0).clone(), None)
        lam, U = torch.linalg.eigh(covs)
        return self._subset(w, means, lam.clamp(min=0.0), U)

    def __repr__(self):
        kind = "diagonal" if self.diagonal else "full"
        return f"GaussianMixture(K={self.K}, D={self.D}, covs={kind})"


def make_mixture(kind: str, D: int = 2, K: int = 4, scale: float = 2.0, std: float = 0.3,
                 generator: Optional[torch.Generator] = None, dtype=torch.float64) -> GaussianMixture:
    """Ready-made test mixtures.

    kind="ring":   K equal-weight components on a circle of radius `scale` in the
                   first two coordinates (others 0), isotropic std `std`.
    kind="random": K components with means ~ N(0, scale^2 I), random full
                   covariances with eigenvalues in [std^2/4, std^2], and
                   Dirichlet-like unequal weights, drawn from `generator`.
    """
    if kind == "ring":
        ang = torch.arange(K, dtype=torch.float64) * 2 * math.pi / K
        means = torch.zeros(K, D, dtype=torch.float64)
        means[:, 0], means[:, 1] = scale * torch.cos(ang), scale * torch.sin(ang)
        return GaussianMixture(torch.ones(K), means, torch.full((K, D), std ** 2, dtype=torch.float64), dtype=dtype)
    if kind == "random":
        g = generator
        means = scale * torch.randn(K, D, generator=g, dtype=torch.float64)
        Q, _ = torch.linalg.qr(torch.randn(K, D, D, generator=g, dtype=torch.float64))
        lam = std ** 2 * (0.25 + 0.75 * torch.rand(K, D, generator=g, dtype=torch.float64))
        covs = Q @ torch.diag_embed(lam) @ Q.transpose(1, 2)
        covs = 0.5 * (covs + covs.transpose(1, 2))
        weights = 0.5 + torch.rand(K, generator=g, dtype=torch.float64)
        return GaussianMixture(weights, means, covs, dtype=dtype)
    raise ValueError(f"unknown mixture kind {kind!r}; expected one of ['ring', 'random']")
