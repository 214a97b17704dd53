"""The SDEs of score-based generative modelling. Imports nothing from models or solvers."""
from .base import SDE, ReverseSDE, batch_sum, expand_as_batch
from .degradations import Degradation, GaussianBlur, GaussianNoise, Masking, Pixelate, Snow
from .degradation_registry import (DEGRADATIONS, get_degradation, make_degradation, register_degradation,
                                   unregister_degradation)
from .sdes import VPSDE, VESDE, CosineSchedule, LinearSchedule, get_sde, subVPSDE

__all__ = ["SDE", "ReverseSDE", "VPSDE", "subVPSDE", "VESDE", "get_sde",
           "LinearSchedule", "CosineSchedule", "batch_sum", "expand_as_batch",
           "DEGRADATIONS", "Degradation", "GaussianBlur", "GaussianNoise", "Masking", "Pixelate", "Snow",
           "get_degradation", "make_degradation", "register_degradation", "unregister_degradation"]
