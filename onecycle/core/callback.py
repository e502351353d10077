"""Callbacks and the cancel exceptions that steer the training loop.

A callback is any object with methods named after events (``before_fit``, ``after_batch``...).
The Learner calls them in ``order`` (lower first); raising a ``Cancel*Exception`` from an event
skips the rest of that stage, which is how callbacks change control flow without touching the loop.
"""
from __future__ import annotations

import warnings

from .checks import short_repr

__all__ = ['Callback', 'EVENTS', 'in_trial', 'CancelFitException', 'CancelEpochException', 'CancelTrainException',
           'CancelValidateException', 'CancelBatchException', 'CancelBackwardException', 'CancelStepException']

# Every event the loop fires, in loop order; each stage X (fit, epoch, train, validate, batch, backward,
# step) has before_X and after_X, and a batch also fires after_pred and after_loss before its backward pass.
EVENTS = ('before_fit', 'before_epoch', 'before_train', 'before_validate', 'before_batch', 'after_pred', 'after_loss',
          'before_backward', 'after_backward', 'before_step', 'after_step', 'after_batch', 'after_train',
          'after_validate', 'after_epoch', 'after_fit')


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

    Events, in the order the loop fires them (``learn.show_training_loop()`` prints the loop with the
    callbacks that handle each one)::

        before_fit
          before_epoch
            before_train     for each batch: before_batch, after_pred, after_loss, before_backward,
                             after_backward, before_step, after_step, after_batch
            after_train
            before_validate  for each batch: before_batch, after_pred, after_loss, after_batch
            after_validate
          after_epoch
        after_fit            runs whatever ends the fit (cancel, error, Ctrl-C), for every callback

    ``self.learn`` is the Learner; attributes the callback lacks are read from it, so ``self.model`` or
    ``self.loss`` read naturally. ``order`` decides who runs first at each event (lower first, ties
    keep insertion order): FitPosition -100, FSDP -30, DistributedCallback -25, GradAccumulation -20,
    DivergenceGuard -15, MixedPrecision -10, user callbacks 0, ParamScheduler 10, Recorder 50,
    ProgressCallback and TorchScheduler 60, loggers 65, SaveModel 70, EarlyStopping 80, InterruptGuard
    1000 (last). Raising ``CancelXException``
    skips the rest of stage X; ``after_X`` still runs for fit, epoch, train, validate and batch, not for
    backward and step (the cancelled gradient or update never happened). A cancelled step is no optimizer
    step: ``step_count``, the schedules, torch schedulers and ``recorder.hps`` do not advance for it.
    That is how a skipped step is skipped: an accumulation batch that does not step (GradAccumulation),
    a non-finite loss or gradient (``DivergenceGuard(action='skip')``), and an fp16 step whose
    gradients overflowed (MixedPrecision, which raises it once the GradScaler finds inf/NaN; the loop's
    own ``scaler.step`` then never has a step to skip; a fused optimizer instead skips it on the GPU,
    with no host read, and that step counts).

    What a callback may READ (always): ``model``, ``opt``, ``dls``, ``loss_func``, ``metrics``,
    ``n_inp``, ``device``, ``recorder``, ``cbs``, ``wd``, ``wd_hook``; during a fit: ``n_epoch``,
    ``epoch`` (0-based), ``step_count`` (optimizer steps so far in this fit), ``steps_per_epoch``,
    ``n_steps``, ``training`` (True in the training pass), ``dl``, ``n_iter`` (batches in this pass),
    ``iter`` (0-based batch index), ``batch``, ``xb``/``yb`` (inputs and targets, tuples; a dict batch
    is one input, called as ``model(**batch)``, with ``batch['labels']`` as target), ``batch_size``,
    ``is_step_batch`` (the optimizer steps after this batch); from ``after_pred``: ``pred`` (the
    output's ``logits`` when it has them; with ``loss_func=None`` the loss is the output's ``loss``);
    from ``after_loss``: ``loss`` (the batch's mean loss, what is recorded) and ``loss_grad`` (the
    tensor backward runs on). Results: ``recorder.losses`` per batch, ``recorder.hps`` per step,
    ``recorder.last_valid`` (valid loss and metrics by name) from ``after_validate`` of a callback
    with order above the Recorder's (50), ``recorder.epochs[-1]`` (this epoch's row: epoch,
    train_loss, valid_loss, metrics, time) in ``after_epoch`` at any order (in an epoch cancelled
    before its last pass ended, from the Recorder's own ``after_epoch`` on).

    What a callback may SET, and where:
    - ``pred`` in ``after_pred``; ``loss`` / ``loss_grad`` in ``after_loss`` and ``before_backward``
      (``loss_grad`` scaled or summed for backward, ``loss`` for what is recorded);
    - hyper-parameters of ``opt.param_groups`` (through ``onecycle.set_hyper`` names) in any event,
      usually ``before_batch``; gradients between ``after_backward`` and ``before_step``;
    - ``accum_steps`` (batches per optimizer step) and ``scaler`` (a ``torch.amp.GradScaler`` the step
      goes through) in ``before_fit``, reset in ``after_fit`` (GradAccumulation, MixedPrecision do); a
      callback that sets ``scaler`` also cancels the steps it would skip, as MixedPrecision does
      (unless the optimizer is fused and skips them itself);
    - ``model`` (a wrapper such as DDP) in ``before_fit``/``before_train``, given back in ``after_fit``;
    - ``dls`` in ``before_fit``; ``dl`` and ``first_batch`` (the index of its first batch) in
      ``before_train`` (resuming a pass); ``first_epoch`` in ``before_fit`` (resuming a fit);
    - ``keep_history`` is True while a fit resumes: callbacks with a history (Recorder, DivergenceGuard,
      SaveModel) keep it instead of starting afresh.
    A callback with ``state_dict()`` / ``load_state_dict(sd)`` is saved in checkpoints and restored on
    resume. A callback whose class has ``is_trial = True`` (the range test, the searches' trials) marks
    its fit as a trial that the learner forgets afterwards: ``in_trial(learn)`` is then True, and
    loggers, EarlyStopping and SaveModel stand aside. Anything else on the learner is the loop's own.
    Assigning, on a callback, an attribute that the learner has (``self.lr = ...`` meant for
    ``self.learn.lr``) warns: it would only shadow it.
    """
    order = 0
    learn = None

    def __getattr__(self, name):
        # Only called for missing attributes: forward to the learner, but never for private names
        # (keeps pickling/copying sane and avoids infinite recursion before ``learn`` is set).
        if name.startswith('_') or self.learn is None:
            raise AttributeError(f'{type(self).__name__!s} has no attribute {name!r}')
        return getattr(self.learn, name)

    def __setattr__(self, name, value):
        # A new public attribute that the learner also has would hide the learner's from this callback.
        if name not in self.__dict__ and name[0] != '_' and name != 'learn' and self.learn is not None \
                and not hasattr(type(self), name) and hasattr(self.learn, name):
            warnings.warn(f'{type(self).__name__}.{name} = ... sets an attribute on the callback that shadows '
                          f'learn.{name}; to change the learner, assign self.learn.{name}', stacklevel=2)
        object.__setattr__(self, name, value)

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        return f'{type(self).__name__}()'


def in_trial(learn) -> bool:
    "Whether the fit running on `learn` is a trial (a range test, a search): one of its callbacks has ``is_trial``."
    return any(getattr(type(c), 'is_trial', False) for c in learn.cbs)


def check_callbacks(name: str, cbs) -> list:
    """`cbs` as a list of callback objects: None, one callback or Callback class, or a list/tuple of them
    (classes are instantiated). Anything else is refused, naming `name` and the position, before any
    callback is attached."""
    if cbs is None: return []
    items = list(cbs) if isinstance(cbs, (list, tuple)) else [cbs]
    out = []
    for i, c in enumerate(items):
        if isinstance(c, type) and issubclass(c, Callback): c = c()
        elif isinstance(c, (type, type(None), bool, int, float, complex, str, bytes, dict, set, list, tuple)) \
                or not (isinstance(c, Callback) or any(callable(getattr(c, e, None)) for e in EVENTS)):
            where = f'{name}[{i}] is' if isinstance(cbs, (list, tuple)) else 'got'
            raise TypeError(f'{name} must be callbacks (Callback objects or classes, or objects with event methods '
                            f'such as after_batch); {where} {type(c).__name__} {short_repr(c)}')
        out.append(c)
    return out
