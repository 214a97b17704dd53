"""The SDEs of score-based generative modelling. Imports nothing from models or solvers.

A new SDE is one `SDE` subclass and one `@register_sde("name")` line (`sde_lib.registry`)."""
from .base import SDE, ReverseSDE, batch_sum, expand_as_batch
from .registry import get_sde, register_sde, sde_class, sde_names
from .sdes import VPSDE, VESDE, CosineSchedule, LinearSchedule, subVPSDE

__all__ = ["SDE", "ReverseSDE", "VPSDE", "subVPSDE", "VESDE", "get_sde", "register_sde", "sde_class",
           "sde_names", "LinearSchedule", "CosineSchedule", "batch_sum", "expand_as_batch"]
