"""Samplers and likelihoods for score SDEs. Sees only an `sde` and a `score_fn`.

    from solvers import sample, log_likelihood, bits_per_dim, encode, decode
"""
from ._common import CountedScore, SampleInfo
from .correctors import CORRECTORS
from .likelihood import LikelihoodResult, bits_per_dim, log_likelihood
from .elbo import ElboResult, TimeProposal, elbo
from .metrics import sliced_wasserstein
from .ode import ADAPTIVE_METHODS as ADAPTIVE_ODE_METHODS
from .ode import FIXED_METHODS as FIXED_ODE_METHODS
from .ode import decode, encode
from .predictors import PREDICTORS
from .sampling import SAMPLERS, sample

__all__ = ["FIXED_ODE_METHODS", "ADAPTIVE_ODE_METHODS", "sample", "log_likelihood", "bits_per_dim", "encode", "decode", "SampleInfo",
           "LikelihoodResult", "CountedScore", "elbo", "ElboResult", "TimeProposal", "sliced_wasserstein", "SAMPLERS", "PREDICTORS", "CORRECTORS"]
