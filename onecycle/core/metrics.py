"""Metrics: ``metric(pred, target) -> scalar tensor``, averaged over the validation set by batch size."""
from __future__ import annotations

import torch

__all__ = ['accuracy', 'error_rate']


def accuracy(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    "Fraction of samples whose highest-scoring class is the target."
    return (pred.argmax(dim=-1) == targ).float().mean()


def error_rate(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    "1 - accuracy."
    return 1 - accuracy(pred, targ)
