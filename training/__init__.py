"""Data, losses, EMA, checkpoints and the training loop."""
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .data import BatchSampler, Dataset, dequantize, get_dataset, model_to_uint8, uint8_to_model
from .ema import EMA
from .losses import continuous_dsm_loss, ddpm_loss, get_loss_fn, smld_loss
from .loop import NonFiniteLossError, TrainState, restore_model, train

__all__ = ["BatchSampler", "Dataset", "EMA", "NonFiniteLossError", "TrainState", "continuous_dsm_loss",
           "ddpm_loss", "dequantize", "get_dataset", "get_loss_fn", "latest_checkpoint", "load_checkpoint",
           "model_to_uint8", "restore_model", "save_checkpoint", "smld_loss", "train", "uint8_to_model"]
