"""Checkpoints: everything a fit needs to continue bitwise where it stopped, written atomically and
read back without running any pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` reads it and nothing else is ever accepted. It holds the model and
optimizer state, the gradients of an accumulation group in progress, the recorder's history, the
state of every callback that has one (``state_dict``/``load_state_dict``: schedules, accumulation,
the fp16 scaler, SaveModel's best value...), the RNG states (python, numpy, torch, CUDA and the
training DataLoader's generators) and the fit's position (epochs and batches done, optimizer steps).

Resuming (``learn.fit(..., resume=path)``, ``fit_one_cycle(..., resume=path)``) replays the
interrupted epoch's data pipeline from the RNG states it started from and discards the batches
already done, so the shuffling order and any random augmentation match the uninterrupted run; the
cost is reading those batches once more.
"""
from ..core.rng import get_rng_state, set_rng_state
from .files import CheckpointError, atomic_save, read_checkpoint
from .resume import FitPosition, Resume, check_resumable
from .save_model import SaveModel
from .state import checkpoint_state, load_checkpoint, load_model_weights, register_model_loader, save_checkpoint

__all__ = ['CheckpointError', 'save_checkpoint', 'load_checkpoint', 'read_checkpoint', 'checkpoint_state',
           'atomic_save', 'get_rng_state', 'set_rng_state', 'SaveModel', 'Resume', 'FitPosition', 'check_resumable',
           'load_model_weights', 'register_model_loader']
