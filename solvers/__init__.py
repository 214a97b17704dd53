"""Samplers and likelihoods for score SDEs. Sees only an `sde` and a `score_fn`.

    from solvers import sample, log_likelihood, bits_per_dim, encode, decode
    from solvers import register_sampler, SAMPLERS      # add your own sampler

Importing the package registers every built-in sampler (the `samplers_*` modules).
"""
from ._common import CountedScore, NoiseSource, SampleInfo
from .correctors import CORRECTORS
from .likelihood import LikelihoodResult, bits_per_dim, log_likelihood
from .elbo import ElboResult, TimeProposal, elbo
from .metrics import sliced_wasserstein
from .ode import ADAPTIVE_METHODS as ADAPTIVE_ODE_METHODS
from .ode import FIXED_METHODS as FIXED_ODE_METHODS
from .ode import decode, encode
from .predictors import PREDICTORS
from .sampling import SAMPLERS, Observation, SamplerSpec, register_sampler, sample, sampler_table, unregister_sampler
from . import samplers_pc, samplers_sigma, samplers_ext  # noqa: E402,F401  (register the built-ins)
# conditional generation: guidance combinators and inverse problems by replacement
from .guidance import (classifier_free_guidance, classifier_guidance, contrastive_guidance, tweedie_x0,
                       universal_guidance)
from .inpaint import MASKS, colorize, grey_projector, inpaint, make_mask, project_inpaint
# cold diffusion: Algorithms 1 and 2 of Bansal et al. for any degrade/restore callables
from .cold import COLD_SAMPLER, DegradedPrior, cold_sample, cold_time_grid, hot_pair

__all__ = ["FIXED_ODE_METHODS", "ADAPTIVE_ODE_METHODS", "sample", "log_likelihood", "bits_per_dim", "encode", "decode",
           "SampleInfo", "LikelihoodResult", "CountedScore", "NoiseSource", "sliced_wasserstein", "SAMPLERS",
           "SamplerSpec", "register_sampler", "unregister_sampler", "sampler_table", "PREDICTORS", "CORRECTORS",
           "elbo", "ElboResult", "TimeProposal",
           "classifier_guidance", "classifier_free_guidance", "contrastive_guidance", "universal_guidance", "tweedie_x0",
           "inpaint", "colorize", "project_inpaint", "grey_projector", "MASKS", "make_mask", "Observation",
           "COLD_SAMPLER", "cold_sample", "cold_time_grid", "hot_pair", "DegradedPrior"]
from . import dpm_solver, unipc  # noqa: E402,F401  (register the DPM-Solver family and UniPC)
