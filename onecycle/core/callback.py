"""Callbacks and the cancel exceptions that steer the training loop.

A callback is any object with methods named after events (``before_fit``, ``after_batch``...).
The Learner calls them in ``order`` (lower first); raising a ``Cancel*Exception`` from an event
skips the rest of that stage, which is how callbacks change control flow without touching the loop.
"""
from __future__ import annotations

__all__ = ['Callback', 'EVENTS', 'CancelFitException', 'CancelEpochException', 'CancelTrainException',
           'CancelValidateException', 'CancelBatchException', 'CancelBackwardException', 'CancelStepException']

# The loop's stages, outermost first. Each has a ``before_`` and an ``after_`` event; a batch also
# fires ``after_pred`` and ``after_loss`` between its forward pass and its backward pass.
STAGES = ('fit', 'epoch', 'train', 'validate', 'batch', 'backward', 'step')
EVENTS = tuple(f'{w}_{s}' for s in STAGES for w in ('before', 'after')) + ('after_pred', 'after_loss')


class CancelFitException(Exception):
    "Stop training now; ``after_fit`` still runs."
class CancelEpochException(Exception):
    "Skip the rest of this epoch (its training and validation); ``after_epoch`` still runs."
class CancelTrainException(Exception):
    "Skip the rest of this epoch's training pass; ``after_train`` still runs, then validation."
class CancelValidateException(Exception):
    "Skip this epoch's validation pass; ``after_validate`` still runs."
class CancelBatchException(Exception):
    "Skip the rest of this batch; ``after_batch`` still runs."
class CancelBackwardException(Exception):
    "Skip the backward pass; ``after_backward`` does not run, since no gradient was computed."
class CancelStepException(Exception):
    "Skip the optimizer step (gradients are kept); ``after_step`` does not run, since no step happened."


class Callback:
    """Base class for callbacks: override the events you need.

    ``self.learn`` is set when the callback is added to a Learner; attributes the callback lacks
    are looked up on the learner, so ``self.model``, ``self.opt`` or ``self.loss`` read naturally.
    ``order`` decides who runs first at each event (lower first, ties keep insertion order).
    """
    order = 0
    learn = None

    def __getattr__(self, name):
        # Only called for missing attributes: forward to the learner, but never for private names
        # (keeps pickling/copying sane and avoids infinite recursion before ``learn`` is set).
        if name.startswith('_') or self.learn is None:
            raise AttributeError(f'{type(self).__name__!s} has no attribute {name!r}')
        return getattr(self.learn, name)

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        return f'{type(self).__name__}()'
