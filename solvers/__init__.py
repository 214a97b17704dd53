"""Samplers and likelihoods for score SDEs. Sees only an `sde` and a `score_fn`.

    from solvers import sample, log_likelihood, bits_per_dim, encode, decode
"""
from ._common import CountedScore, SampleInfo
from .correctors import CORRECTORS
from .likelihood import LikelihoodResult, bits_per_dim, log_likelihood
from .metrics import sliced_wasserstein
from .ode import ADAPTIVE_METHODS as ADAPTIVE_ODE_METHODS
from .ode import FIXED_METHODS as FIXED_ODE_METHODS
from .ode import decode, encode
from .predictors import PREDICTORS
from .sampling import SAMPLERS, sample
# conditional generation (issue 10): guidance combinators and inverse problems by replacement
from .guidance import classifier_free_guidance, classifier_guidance, tweedie_x0, universal_guidance
from .inpaint import INPAINT_SAMPLERS, colorize, grey_projector, inpaint, project_inpaint

__all__ = ["FIXED_ODE_METHODS", "ADAPTIVE_ODE_METHODS", "sample", "log_likelihood", "bits_per_dim", "encode", "decode", "SampleInfo",
           "LikelihoodResult", "CountedScore", "sliced_wasserstein", "SAMPLERS", "PREDICTORS", "CORRECTORS",
           "classifier_guidance", "classifier_free_guidance", "universal_guidance", "tweedie_x0",
           "inpaint", "colorize", "project_inpaint", "grey_projector", "INPAINT_SAMPLERS"]
