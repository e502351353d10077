"""The Learner: a small training loop that fires named events to callbacks.

Everything beyond forward, loss, backward and step (schedules, recording, progress, mixed
precision, accumulation, clipping, range tests) is a callback, so the loop below stays short.
"""
from __future__ import annotations

import contextlib
import math
from bisect import bisect_right

import torch
from torch import nn

from .callbacks.divergence import DivergenceGuard
from .checkpoint import Resume, get_rng_state, load_checkpoint, save_checkpoint
from .core.callback import (EVENTS, STAGES, Callback, CancelBackwardException, CancelBatchException, CancelEpochException,
                            CancelFitException, CancelStepException, CancelTrainException, CancelValidateException)
from .core.checks import check_callable, check_int, check_lr, check_positive, check_wd
from .core.data import DataLoaders, batch_size_of, check_loader, default_device, to_device
from .core.dist import init_distributed, is_main_process
from .core.hyper import WD_KEY, DecoupledWeightDecay, hyper_state, is_no_decay_param, lr_range, restore_hyper_state, set_hyper
from .distributed import distribute, effective_batch_size

__all__ = ['Learner', 'DataLoaders', 'to_device', 'default_device']

_CANCELS = (CancelFitException, CancelEpochException, CancelTrainException, CancelValidateException,
            CancelBatchException, CancelBackwardException, CancelStepException)


_STAGE_EVENTS = {s: (f'before_{s}', f'after_{s}') for s in STAGES}



def _cb_name(handler) -> str:
    return type(getattr(handler, '__self__', handler)).__name__


def _check_cbs(cbs):
    "A callback, a callback class, or a list of them; anything else is refused before the fit starts."
    if cbs is None: return []
    cbs = list(cbs) if isinstance(cbs, (list, tuple)) else [cbs]
    for c in cbs:
        if isinstance(c, (type, int, float, str, bytes, dict)) and not (isinstance(c, type) and issubclass(c, Callback)):
            raise TypeError(f'cbs must be callbacks (objects with event methods) or Callback classes, got {type(c).__name__} {c!r}')
    return cbs


def _bad_loss(loss):
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f'loss_func must return a tensor, got {type(loss).__name__} {loss!r}')
    raise ValueError(f'loss_func must return a scalar (0-d) tensor, got one of shape {tuple(loss.shape)}: reduce it, '
                     "e.g. with reduction='mean' or .mean()")


class Learner:
    """Trains `model` on `dls` with `loss_func`, firing events to callbacks.

    ``fit(n)`` runs, for each epoch, a training pass then a validation pass; each stage X fires
    ``before_X`` and ``after_X`` (stages: fit, epoch, train, validate, batch, backward, step), and a
    batch fires ``after_pred`` and ``after_loss`` too. Raising ``CancelXException`` skips the rest of
    stage X. After a cancel, ``after_X`` still runs for fit, epoch, train, validate and batch, so
    bookkeeping stays consistent; it does not run for backward and step, since the cancelled gradient
    or update never happened. ``after_fit`` runs even when fit ends by an error or KeyboardInterrupt,
    so callbacks can always clean up.

    Args:
        model: the torch module; moved to `device`.
        dls: a pair (train, valid) of DataLoaders, or an object with ``.train`` and ``.valid``.
        loss_func: ``loss_func(pred, *targets)`` returning a scalar tensor.
        opt_func: a torch optimizer class (or factory) called as ``opt_func(param_groups, lr=lr)``.
        lr: the starting learning rate; schedules usually override it.
        metrics: functions ``metric(pred, *targets)`` averaged over the validation set.
        cbs: extra callbacks, kept for every fit.
        device: where to train; CUDA when available by default.
        progress: show fastprogress bars and a per-epoch table.
        wd: decoupled weight decay (p <- p - lr*wd*p) for any optimizer; None keeps the optimizer's own
            ``weight_decay`` setting untouched.
        wd_bn_bias: also decay biases and normalization weights (off by default, as is customary).
        splitter: ``splitter(model)`` returning a list of parameter lists, one per param group
            (for discriminative learning rates); one group by default.
        n_inp: how many leading elements of a batch are model inputs; the rest are targets.
        guard: stop on a NaN/inf loss before it reaches the weights (a DivergenceGuard). 'auto' checks
            the loss before each step on the CPU, where that is free of host-device synchronisation,
            and leaves it off on a GPU (one synchronisation per step); True also checks gradients,
            on any device; False installs none.
    """
    def __init__(self, model: nn.Module, dls, loss_func, opt_func=torch.optim.AdamW, lr=1e-3, metrics=(),
                 cbs=(), device=None, progress=True, wd=None, wd_bn_bias=False, splitter=None, n_inp=1, guard='auto'):
        if not isinstance(model, nn.Module): raise TypeError(f'model must be a torch.nn.Module, got {type(model).__name__}')
        check_callable('loss_func', loss_func); check_callable('opt_func', opt_func)
        check_lr('lr', lr); check_wd('wd', wd)
        check_int('n_inp', n_inp, min_value=1); check_callable('splitter', splitter, allow_none=True)
        if guard not in (True, False, 'auto'): raise ValueError(f"guard must be True, False or 'auto', got {guard!r}")
        metrics = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
        for m in metrics: check_callable('metrics', m)
        ddp = init_distributed()   # under torchrun: join the process group, train data-parallel
        self.dls = DataLoaders.wrap(dls)
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == 'cuda' and self.device.index is None:   # 'cuda' -> 'cuda:N', as tensors report it
            self.device = torch.device('cuda', torch.cuda.current_device())
        if self.device.type == 'meta': raise ValueError("device must not be 'meta': meta tensors hold no data to train")
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            raise ValueError("model has parameters or buffers on the 'meta' device, which hold no data: materialize them "
                             '(e.g. model.to_empty(device=...) then initialise or load weights) before making a Learner')
        self.model = model.to(self.device)
        self.loss_func, self.opt_func, self.metrics, self.n_inp = loss_func, opt_func, metrics, n_inp
        self.splitter, self.wd_bn_bias = splitter, wd_bn_bias
        self.accum_steps, self.scaler = 1, None   # set by GradAccumulation / MixedPrecision
        self.training, self.n_epoch, self.epoch, self.step_count = False, 0, 0, 0
        # where the last fit stands, for checkpoints: see onecycle.checkpoint
        self.epochs_done, self.batches_done, self.epoch_rng, self._resume = 0, 0, None, None
        self.fit_n_iter, self.fit_steps_per_epoch, self.fit_end_rng = None, None, None
        self.cbs, self._handlers = [], {e: [] for e in EVENTS}
        self.create_opt(lr, wd)
        from .core.recorder import Recorder
        self.recorder = Recorder()
        cbs = list(cbs)
        if not any(isinstance(c, DivergenceGuard) or c is DivergenceGuard for c in cbs):
            # 'auto': check the loss before every step where that costs no host-device synchronisation
            # (CPU); on a GPU the check would wait for the device once per step, so it is opt-in there.
            if guard is True: cbs.append(DivergenceGuard())
            elif guard == 'auto' and self.device.type == 'cpu': cbs.append(DivergenceGuard(check_grads=False))
        self.add_cbs([self.recorder, *cbs])
        self.progress = progress
        if ddp: distribute(self)

    # --- optimizer -------------------------------------------------------------------------------
    def param_groups(self) -> list[list[nn.Parameter]]:
        "The parameters split into groups by `splitter` (one group by default)."
        groups = self.splitter(self.model) if self.splitter else [list(self.model.parameters())]
        groups = [list(g) for g in groups]
        if not groups or any(len(g) == 0 for g in groups):
            raise ValueError('splitter must return a non-empty list of non-empty parameter groups')
        return groups

    def create_opt(self, lr=1e-3, wd=None):
        "(Re)create the optimizer from `opt_func`, with `lr` (number, sequence or slice) per group."
        groups = self.param_groups()
        lrs = lr_range(lr, len(groups))
        self.opt = self.opt_func([{'params': g, 'lr': l} for g, l in zip(groups, lrs)], lr=lrs[-1])
        exempt = set() if self.wd_bn_bias else is_no_decay_param(self.model)
        self.wd_hook = DecoupledWeightDecay(self.opt, exempt)
        self.wd = None
        if wd is not None: self.set_wd(wd)
        return self.opt

    def set_wd(self, wd):
        "Use decoupled weight decay `wd` (one value, or one per group) in place of the optimizer's own."
        wds = lr_range(wd, len(self.opt.param_groups)) if not isinstance(wd, slice) else None
        if wds is None: raise TypeError('wd must be a number or one number per param group')
        for pg, w in zip(self.opt.param_groups, wds):
            check_positive('wd', w, allow_zero=True)
            if 'weight_decay' in pg: pg['weight_decay'] = 0.
            pg[WD_KEY] = w
        self.wd = wd

    def set_hyper(self, name, value):
        "Set hyper-parameter `name` ('lr', 'mom', 'wd', ...) on all param groups; a slice/list spreads per group."
        for pg, v in zip(self.opt.param_groups, lr_range(value, len(self.opt.param_groups))): set_hyper(pg, name, v)

    # --- callbacks -------------------------------------------------------------------------------
    def add_cb(self, cb):
        "Add a callback, keeping the list sorted by `order` (ties in insertion order)."
        if isinstance(cb, type): cb = cb()
        cb.learn = self
        orders = [getattr(c, 'order', 0) for c in self.cbs]
        self.cbs.insert(bisect_right(orders, getattr(cb, 'order', 0)), cb)
        self._index_handlers()
        return cb

    def add_cbs(self, cbs):
        for cb in cbs: self.add_cb(cb)

    def remove_cb(self, cb):
        if cb in self.cbs: self.cbs.remove(cb)
        self._index_handlers()

    def remove_cbs(self, cbs):
        for cb in cbs: self.remove_cb(cb)

    @contextlib.contextmanager
    def added_cbs(self, cbs):
        "Callbacks that live for the `with` block only."
        cbs = [c() if isinstance(c, type) else c for c in (cbs or ())]
        self.add_cbs(cbs)
        try: yield cbs
        finally: self.remove_cbs(cbs)

    def _index_handlers(self):
        # Bound methods per event, looked up once here rather than at every event.
        self._handlers = {e: [m for cb in self.cbs if callable(m := getattr(cb, e, None))] for e in EVENTS}

    def fire(self, event: str):
        "Run `event` on every callback that handles it; an error names the callback and the event."
        for handler in self._handlers[event]:
            try: handler()
            except _CANCELS: raise
            except Exception as e:
                e.add_note(f'(raised in callback {_cb_name(handler)}, event {event})')
                raise

    def _cleanup_after_fit(self, exc):
        "after_fit for every callback when the fit ends by an error: one failing does not stop the others."
        for handler in self._handlers['after_fit']:
            try: handler()
            except Exception as e:
                exc.add_note(f'(during cleanup, callback {_cb_name(handler)} raised in after_fit: {type(e).__name__}: {e})')

    @property
    def divergence_guard(self):
        "The DivergenceGuard among the callbacks (None if removed)."
        return next((c for c in self.cbs if isinstance(c, DivergenceGuard)), None)

    @property
    def progress(self) -> bool:
        return any(type(c).__name__ == 'ProgressCallback' for c in self.cbs)

    @progress.setter
    def progress(self, on: bool):
        from .callbacks.progress import ProgressCallback
        self.remove_cbs([c for c in self.cbs if isinstance(c, ProgressCallback)])
        if on and is_main_process(): self.add_cb(ProgressCallback())   # one set of bars, not one per rank

    # --- the loop --------------------------------------------------------------------------------
    def _run(self, stage, f, cancel):
        before, after = _STAGE_EVENTS[stage]
        try:
            if self._handlers[before]: self.fire(before)
            f()
        except cancel:
            if stage in ('backward', 'step'): return   # the cancelled gradient/update never happened
        except BaseException as e:
            if stage == 'fit': self._cleanup_after_fit(e)  # cleanup runs whatever ended the fit
            raise
        if stage == 'batch':   # where a checkpoint taken from here on resumes
            if self.training: self.batches_done = self.iter + 1
        elif stage == 'epoch': self.epochs_done, self.batches_done = self.epoch + 1, 0
        if self._handlers[after]: self.fire(after)

    def fit(self, n_epoch: int, lr=None, wd=None, cbs=None, resume=None):
        """Train for `n_epoch` epochs; `lr`/`wd` set every param group first; `cbs` live for this call only.

        `resume` continues a fit that stopped (interrupted, cancelled, crashed) exactly where it stopped,
        with bitwise the same result on the CPU: a checkpoint path (``learn.save``, ``SaveModel``), or
        True for this learner's own state (after ``learn.load`` or an interrupted fit). Pass the
        arguments and callbacks of the fit being continued. A KeyboardInterrupt ends the fit cleanly
        (``after_fit`` runs, bars close, history stays) and is raised again, so Ctrl-C still stops a
        script; ``resume=True`` then carries on."""
        check_int('n_epoch', n_epoch, min_value=1)
        check_lr('lr', lr, allow_none=True); check_wd('wd', wd)
        check_loader(self.dls.train, 'dls.train')
        if self.dls.valid is not None: check_loader(self.dls.valid, 'dls.valid')
        self._check_model_device()
        cbs = _check_cbs(cbs)
        resuming = None if resume is None or resume is False else Resume(self, resume, n_epoch)
        with self.added_cbs(cbs):
            self._fit_cbs = list(self.cbs)   # a checkpoint taken after the fit still sees its callbacks
            hypers = hyper_state(self.opt)
            if lr is not None: self.set_hyper('lr', lr)
            if wd is not None: self.set_wd(wd)
            self.n_epoch, self.step_count = n_epoch, 0
            self.epochs_done, self.batches_done, self._resume, self._resume_ckpt = 0, 0, resuming, None
            self.fit_n_iter, self.fit_steps_per_epoch = len(self.dls.train), None
            keep = getattr(self, 'keep_history', False)
            if resuming is not None: self.keep_history = True
            self.opt.zero_grad(set_to_none=True)
            self.fit_end_rng = None
            try: self._run('fit', self._do_fit, CancelFitException)
            except BaseException:
                if self.step_count == 0 and resuming is None:   # failed before any step: settings as they were
                    restore_hyper_state(self.opt, hypers)
                raise
            finally:
                self._resume, self.keep_history = None, keep
                self.fit_end_rng = get_rng_state(self.dls.train)   # a later checkpoint resumes from here

    def _do_fit(self):
        self.fit_steps_per_epoch = self.steps_per_epoch
        start = self._resume.begin(self) if self._resume is not None else 0
        for self.epoch in range(start, self.n_epoch):
            self._run('epoch', self._do_epoch, CancelEpochException)

    def _do_epoch(self):
        self._stage(self.dls.train, True)
        if self.dls.valid is not None: self._stage(self.dls.valid, False)

    def _stage(self, dl, training):
        self.dl, self.training = dl, training
        self.model.train(training)
        with torch.set_grad_enabled(training):
            self._run('train' if training else 'validate', self._all_batches,
                      CancelTrainException if training else CancelValidateException)

    def _all_batches(self):
        self.n_iter = len(self.dl)
        for self.iter, batch in self._batches():
            self.batch, self.loss = to_device(batch, self.device), None
            self._run('batch', self._one_batch, CancelBatchException)

    def _batches(self):
        "(index, batch) pairs. A training pass notes the RNG states its shuffling starts from, so a checkpoint "
        "taken mid-epoch can replay it; a resumed pass skips the batches done before the interruption."
        if not self.training: return enumerate(self.dl)
        self.epoch_rng = get_rng_state(self.dl, cuda=False)
        return self._resume.batches(self) if self._resume is not None else enumerate(self.dl)

    def _one_batch(self):
        self.xb, self.yb = self.batch[:self.n_inp], self.batch[self.n_inp:]
        self.pred = self.model(*self.xb);                               self.fire('after_pred')
        self.loss = self.loss_grad = self.loss_func(self.pred, *self.yb)
        if not isinstance(self.loss, torch.Tensor) or self.loss.ndim: _bad_loss(self.loss)
        self.fire('after_loss')
        if not self.training: return
        self._run('backward', self._backward, CancelBackwardException)
        self._run('step', self._step, CancelStepException)

    def _backward(self):
        self.loss_grad.backward()

    def _step(self):
        if self.scaler is None: self.opt.step()
        else: self.scaler.step(self.opt); self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.step_count += 1

    # --- progress measures for schedules ---------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return batch_size_of(self.yb if self.yb else self.xb)

    @property
    def effective_batch_size(self):
        "Samples per optimizer step over all processes: per-process batch x processes x accumulation."
        return effective_batch_size(self)

    @property
    def steps_per_epoch(self) -> int:
        "Optimizer steps in one training epoch (accumulation steps once per group, partial groups too)."
        return math.ceil(len(self.dls.train) / self.accum_steps)

    @property
    def n_steps(self) -> int:
        "Optimizer steps this fit will take."
        return self.n_epoch * self.steps_per_epoch

    # --- evaluation ------------------------------------------------------------------------------
    def validate(self, dl=None) -> dict:
        "Loss and metrics over `dl` (the validation loader by default), as a dict by name."
        dl = self.dls.valid if dl is None else dl
        check_loader(dl, 'dl')
        was_training = self.model.training
        try: self._stage(dl, False)
        finally: self.model.train(was_training)
        return dict(self.recorder.last_valid)

    def _check_model_device(self):
        "The batches go to `self.device`; the model must be there too, or the first batch fails obscurely."
        devs = {t.device for t in (*self.model.parameters(), *self.model.buffers())}
        bad = sorted(str(d) for d in devs if d.type != self.device.type
                     or (self.device.index is not None and d.index not in (None, self.device.index)))
        if bad:
            raise ValueError(f'the model has parameters or buffers on {", ".join(bad)} but the learner trains on '
                             f'{self.device} (every batch is moved there): move it with learn.model.to(learn.device)'
                             + (" after materializing the 'meta' tensors, which hold no data" if 'meta' in bad else ''))

    # --- checkpoints (onecycle.checkpoint) --------------------------------------------------------
    def save(self, path, with_opt=True):
        """Write a checkpoint to `path` atomically: model, optimizer, schedule positions, recorder history,
        callback states and RNG states; during or after a fit, enough to resume it exactly."""
        return save_checkpoint(self, path, with_opt)

    def load(self, path, with_opt=True, with_rng=True):
        """Load a checkpoint written by `save` (read with ``torch.load(weights_only=True)`` only); nothing
        changes if it does not fit this learner. ``fit(..., resume=True)`` then continues its fit."""
        return load_checkpoint(self, path, with_opt, with_rng)

    # --- one-liners (implemented in their own modules) -------------------------------------------
    def lr_find(self, *args, **kwargs):
        from .tuning.range_test import lr_find
        return lr_find(self, *args, **kwargs)

    def fit_one_cycle(self, *args, **kwargs):
        from .schedules.fit import fit_one_cycle
        return fit_one_cycle(self, *args, **kwargs)

    def diagnose(self, **kwargs):
        "Verdict on the last fit's loss curves (healthy, overfitting, ...), with evidence and a plot."
        from .tuning.diagnostics import diagnose
        return diagnose(self, **kwargs)

    def fit_sgdr(self, *args, **kwargs):
        from .schedules.fit import fit_sgdr
        return fit_sgdr(self, *args, **kwargs)

    def fit_flat_cos(self, *args, **kwargs):
        from .schedules.fit import fit_flat_cos
        return fit_flat_cos(self, *args, **kwargs)

    def fit_clr(self, *args, **kwargs):
        from .schedules.fit import fit_clr
        return fit_clr(self, *args, **kwargs)

    def fit_warmup_cos(self, *args, **kwargs):
        from .schedules.fit import fit_warmup_cos
        return fit_warmup_cos(self, *args, **kwargs)

    def freeze_to(self, n, train_norm=True):
        "Freeze the first `n` param groups (negative counts from the end); see onecycle.discriminative."
        from .callbacks.discriminative import freeze_to
        freeze_to(self, n, train_norm)

    def freeze(self, train_norm=True):
        "Freeze all param groups but the last (the head); normalization layers stay trainable."
        from .callbacks.discriminative import freeze
        freeze(self, train_norm)

    def unfreeze(self):
        from .callbacks.discriminative import unfreeze
        unfreeze(self)

    def fine_tune(self, *args, **kwargs):
        from .schedules.fit import fine_tune
        return fine_tune(self, *args, **kwargs)

    def __repr__(self):
        return f'Learner(model={type(self.model).__name__}, opt={type(self.opt).__name__}, cbs={[type(c).__name__ for c in self.cbs]})'
