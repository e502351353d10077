"""The training loop: forward, loss, backward and step, with a named event before and after each stage.

Everything else (schedules, recording, progress, mixed precision, accumulation, clipping, resume,
data parallelism, range tests) is a callback. ``BaseLearner`` holds the loop and nothing else; the
public ``onecycle.Learner`` adds the default callbacks, checkpoints and the one-liners on top.
"""
from __future__ import annotations

import contextlib
import math
from bisect import bisect_right

import torch
from torch import nn

from .callback import (EVENTS, CancelBackwardException, CancelBatchException, CancelEpochException,
                       CancelFitException, CancelStepException, CancelTrainException, CancelValidateException,
                       check_callbacks)
from .checks import check_callable, check_int, check_lr, check_positive, check_wd, got
from .data import (DataLoaders, batch_size_of, call_model, check_loader, default_device, output_loss, output_pred,
                   split_batch, to_device)
from .hyper import (WD_KEY, DecoupledWeightDecay, hyper_state, is_no_decay_param, lr_range, restore_hyper_state,
                    set_hyper)
from .metrics import check_metrics
from .recorder import Recorder

__all__ = ['BaseLearner']

_CANCELS = (CancelFitException, CancelEpochException, CancelTrainException, CancelValidateException,
            CancelBatchException, CancelBackwardException, CancelStepException)

# The loop as show_training_loop prints it: (depth, event or step), in the order things happen.
_LOOP = [(0, 'before_fit'), (1, 'for each epoch:'), (2, 'before_epoch'),
         (3, 'training pass:'), (4, 'before_train'), (5, 'for each batch:'), (6, 'before_batch'), (6, 'forward'),
         (6, 'after_pred'), (6, 'loss'), (6, 'after_loss'), (6, 'before_backward'), (6, 'backward'),
         (6, 'after_backward'), (6, 'before_step'), (6, 'optimizer step'), (6, 'after_step'), (6, 'after_batch'),
         (4, 'after_train'), (3, 'validation pass:'), (4, 'before_validate'), (5, 'for each batch:'),
         (6, 'before_batch'), (6, 'forward'), (6, 'after_pred'), (6, 'loss'), (6, 'after_loss'), (6, 'after_batch'),
         (4, 'after_validate'), (2, 'after_epoch'), (0, 'after_fit')]


def _cb_name(handler) -> str:
    return type(getattr(handler, '__self__', handler)).__name__


def _bad_loss(loss):
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f'loss_func must return a tensor, {got(loss)}')
    raise ValueError(f'loss_func must return a scalar (0-d) tensor, got one of shape {tuple(loss.shape)}: reduce it, '
                     "e.g. with reduction='mean' or .mean()")


def _no_targets(batch, n_inp):
    n = len(batch) if isinstance(batch, (tuple, list)) else 1
    raise ValueError(f'a batch has {n} element{"s" * (n != 1)} but n_inp={n_inp} are inputs: nothing is left for the '
                     'targets loss_func(pred, *targets) needs; a batch is (inputs..., targets...)')


class BaseLearner:
    """Trains `model` on `dls` with `loss_func`, firing events to callbacks; see ``onecycle.Learner``
    for the arguments. What callbacks may read and set at each event is written in ``Callback``."""
    def __init__(self, model: nn.Module, dls, loss_func=None, opt_func=torch.optim.AdamW, lr=1e-3, metrics=(),
                 cbs=(), device=None, wd=None, wd_bn_bias=False, splitter=None, n_inp=1):
        if not isinstance(model, nn.Module):
            raise TypeError(f'model must be a torch.nn.Module, got {type(model).__name__}')
        check_callable('loss_func', loss_func, allow_none=True); check_callable('opt_func', opt_func)
        if isinstance(loss_func, type):
            name = loss_func.__name__
            raise TypeError(f'loss_func is the class {name}: pass an instance, e.g. {name}()')
        if not any(True for _ in model.parameters()):
            raise ValueError(f'model ({type(model).__name__}) has no parameters: there is nothing to train')
        check_lr('lr', lr); check_wd('wd', wd)
        check_int('n_inp', n_inp, min_value=1); check_callable('splitter', splitter, allow_none=True)
        metrics = check_metrics(metrics)
        cbs = check_callbacks('cbs', cbs)
        self.dls = DataLoaders.wrap(dls)
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == 'cuda' and self.device.index is None:   # 'cuda' -> 'cuda:N', as tensors report it
            self.device = torch.device('cuda', torch.cuda.current_device())
        if self.device.type == 'meta': raise ValueError("device must not be 'meta': meta tensors hold no data to train")
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            raise ValueError("model has parameters or buffers on the 'meta' device, which hold no data: "
                             'materialize them (e.g. model.to_empty(device=...) then initialise or load weights) '
                             'before making a Learner')
        self.model = model.to(self.device)
        self.loss_func, self.opt_func, self.metrics, self.n_inp = loss_func, opt_func, metrics, n_inp
        self.splitter, self.wd_bn_bias = splitter, wd_bn_bias
        self.accum_steps, self.scaler, self.keep_history = 1, None, False
        self.training, self.n_epoch, self.epoch, self.step_count = False, 0, 0, 0
        self.first_epoch, self.first_batch, self._batch_started = 0, 0, False
        self.cbs, self._handlers = [], {e: [] for e in EVENTS}
        self.create_opt(lr, wd)
        self.recorder = Recorder()
        self.add_cbs([self.recorder, *cbs])

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
        opt = self.opt_func([{'params': g, 'lr': l} for g, l in zip(groups, lrs)], lr=lrs[-1])
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f'opt_func must return a torch.optim.Optimizer, got {type(opt).__name__} {opt!r:.60}')
        if isinstance(opt, torch.optim.LBFGS):
            raise TypeError('opt_func made an LBFGS, whose step needs a closure that re-evaluates the loss; the '
                            "Learner's loop steps once per batch without one: use SGD, Adam(W), RMSprop...")
        self.opt = opt
        exempt = set() if self.wd_bn_bias else is_no_decay_param(self.model)
        self.wd_hook = DecoupledWeightDecay(self.opt, exempt)
        self.wd = None
        if wd is not None: self.set_wd(wd)
        return self.opt

    def set_wd(self, wd):
        "Use decoupled weight decay `wd` (one value, or one per group) in place of the optimizer's own."
        wds = lr_range(wd, len(self.opt.param_groups)) if not isinstance(wd, slice) else None
        if wds is None: raise TypeError('wd must be a number or one number per param group')
        for w in wds: check_positive('wd', w, allow_zero=True)
        for pg, w in zip(self.opt.param_groups, wds):
            if 'weight_decay' in pg: pg['weight_decay'] = 0.
            pg[WD_KEY] = w
        self.wd = wd

    def set_hyper(self, name, value):
        "Set hyper-parameter `name` ('lr', 'mom', 'wd', ...) on all param groups; a slice/list spreads per group."
        for pg, v in zip(self.opt.param_groups, lr_range(value, len(self.opt.param_groups))): set_hyper(pg, name, v)

    # --- callbacks -------------------------------------------------------------------------------
    def add_cb(self, cb):
        """Add a callback (or a Callback class, instantiated), keeping the list sorted by `order`
        (ties in insertion order)."""
        cb, = check_callbacks('cb', [cb])
        cb.learn = self
        orders = [getattr(c, 'order', 0) for c in self.cbs]
        self.cbs.insert(bisect_right(orders, getattr(cb, 'order', 0)), cb)
        self._index_handlers()
        return cb

    def add_cbs(self, cbs):
        "Add several callbacks; all are checked before any is added."
        for cb in check_callbacks('cbs', cbs): self.add_cb(cb)

    def remove_cb(self, cb):
        if cb in self.cbs: self.cbs.remove(cb)
        self._index_handlers()

    def remove_cbs(self, cbs):
        for cb in cbs: self.remove_cb(cb)

    @contextlib.contextmanager
    def added_cbs(self, cbs):
        "Callbacks that live for the `with` block only."
        cbs = check_callbacks('cbs', cbs)
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

    def _fire_after_fit(self, exc=None):
        """after_fit for every callback, even when one of them raises: cleanup (restoring weights,
        closing bars, resetting accumulation) must not depend on another callback succeeding.
        The first error is raised once all have run (noted on `exc` instead when the fit already failed)."""
        first = None
        for handler in self._handlers['after_fit']:
            try: handler()
            except Exception as e:
                note = f'(raised in callback {_cb_name(handler)}, event after_fit)'
                if exc is not None: exc.add_note(f'(during cleanup, callback {_cb_name(handler)} raised in after_fit: '
                                                 f'{type(e).__name__}: {e})')
                elif first is None: e.add_note(note); first = e
        if first is not None: raise first

    def show_training_loop(self):
        "Print the loop, event by event, with the callbacks that handle each event in the order they run."
        for depth, what in _LOOP:
            names = [_cb_name(h) for h in self._handlers.get(what, ())]
            print('  ' * depth + what + (f': {", ".join(names)}' if names else ''))

    # --- the loop --------------------------------------------------------------------------------
    def _with_events(self, before, after, f, cancel, runs_after_on_cancel=True):
        "before_X, X, after_X. A CancelXException skips the rest of X; after_X still runs unless told otherwise."
        try:
            if self._handlers[before]: self.fire(before)
            f()
        except cancel:
            if not runs_after_on_cancel: return
        if self._handlers[after]: self.fire(after)

    def fit(self, n_epoch: int, lr=None, wd=None, cbs=None):
        """Train for `n_epoch` epochs; `lr`/`wd` set every param group first; `cbs` live for this call only.

        A KeyboardInterrupt ends the fit cleanly (``after_fit`` runs, bars close, history stays) and is
        raised again, so Ctrl-C still stops a script."""
        self._check_fit_args(n_epoch, lr, wd)
        n_epoch = int(n_epoch)   # a numpy integer would make checkpoints a safe load refuses
        cbs = check_callbacks('cbs', cbs)
        with self.added_cbs(cbs):
            hypers, was_wd = hyper_state(self.opt), self.wd
            if lr is not None: self.set_hyper('lr', lr)
            if wd is not None: self.set_wd(wd)
            self.n_epoch, self.step_count, self.first_epoch = n_epoch, 0, 0
            grads = [(p, p.grad) for pg in self.opt.param_groups for p in pg['params']]
            self._batch_started = False
            self.opt.zero_grad(set_to_none=True)
            try:
                try:
                    if self._handlers['before_fit']: self.fire('before_fit')
                    self._do_fit()
                except CancelFitException: pass
                except BaseException as e:
                    self._fire_after_fit(e)   # 'after_fit' runs whatever ended the fit: callbacks clean up
                    raise
                self._fire_after_fit()
            except BaseException:
                if self.step_count == 0:   # failed before any step: hyper-parameters as they were
                    restore_hyper_state(self.opt, hypers); self.wd = was_wd
                if not self._batch_started:   # and before any batch: the gradients too
                    for p, g in grads: p.grad = g
                raise

    def _check_fit_args(self, n_epoch, lr, wd):
        check_int('n_epoch', n_epoch, min_value=1)
        check_lr('lr', lr, allow_none=True); check_wd('wd', wd)
        n = len(self.opt.param_groups)
        for name, v in (('lr', lr), ('wd', wd)):
            if isinstance(v, (list, tuple)) and len(v) != n:
                raise ValueError(f'{name} has {len(v)} values but the optimizer has {n} param group{"s" * (n > 1)}: '
                                 f'give one value, or one per group')
        check_loader(self.dls.train, 'dls.train')
        if self.dls.valid is not None: check_loader(self.dls.valid, 'dls.valid')
        self._check_model_device()
        if not any(p.requires_grad for pg in self.opt.param_groups for p in pg['params']):
            raise ValueError('every parameter the optimizer holds is frozen (requires_grad=False): nothing would '
                             'train; unfreeze some (learn.unfreeze(), or p.requires_grad_())')

    def _do_fit(self):
        for self.epoch in range(self.first_epoch, self.n_epoch):
            self._with_events('before_epoch', 'after_epoch', self._do_epoch, CancelEpochException)

    def _do_epoch(self):
        self._do_pass(self.dls.train, True)
        if self.dls.valid is not None: self._do_pass(self.dls.valid, False)

    def _do_pass(self, dl, training):
        self.dl, self.training, self.first_batch = dl, training, 0
        self.model.train(training)
        with torch.set_grad_enabled(training):
            if training: self._with_events('before_train', 'after_train', self._all_batches, CancelTrainException)
            else: self._with_events('before_validate', 'after_validate', self._all_batches, CancelValidateException)

    def _all_batches(self):
        self.n_iter = len(self.dl)
        for self.iter, batch in enumerate(self.dl, self.first_batch):
            self.batch, self.loss = to_device(batch, self.device), None
            self._with_events('before_batch', 'after_batch', self._one_batch, CancelBatchException)

    def _one_batch(self):
        self.xb, self.yb = split_batch(self.batch, self.n_inp)   # a dict batch: model(**batch), labels as target
        # training needs targets for the loss: say so before the model is called with them as inputs
        if self.training and not self.yb and self.loss_func is not None: _no_targets(self.batch, self.n_inp)
        self._batch_started = True
        out = call_model(self.model, self.xb)
        self.pred = output_pred(out)   # the output's logits when it has them (Hugging Face), else the output
        self.fire('after_pred')
        if self.loss_func is None: self.loss = self.loss_grad = output_loss(out)   # the model's own loss
        else:
            if not self.yb: _no_targets(self.batch, self.n_inp)
            self.loss = self.loss_grad = self.loss_func(self.pred, *self.yb)
        if not isinstance(self.loss, torch.Tensor) or self.loss.ndim: _bad_loss(self.loss)
        self.fire('after_loss')
        if not self.training: return
        # a cancelled backward or step never happened: no after_backward / after_step for it
        self._with_events('before_backward', 'after_backward', self._backward, CancelBackwardException, False)
        self._with_events('before_step', 'after_step', self._step, CancelStepException, False)

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
        "Samples in the current batch (of this process)."
        return batch_size_of(self.yb if self.yb else self.xb)

    @property
    def steps_per_epoch(self) -> int:
        "Optimizer steps in one training epoch (accumulation steps once per group, partial groups too)."
        return math.ceil(len(self.dls.train) / self.accum_steps)

    @property
    def n_steps(self) -> int:
        "Optimizer steps this fit will take."
        return self.n_epoch * self.steps_per_epoch

    @property
    def is_step_batch(self) -> bool:
        """Whether the optimizer steps after this training batch: the last of each group of `accum_steps`,
        and of the epoch."""
        return (self.iter + 1) % self.accum_steps == 0 or self.iter + 1 >= self.n_iter

    # --- evaluation ------------------------------------------------------------------------------
    def validate(self, dl=None) -> dict:
        "Loss and metrics over `dl` (the validation loader by default), as a dict by name."
        dl = self.dls.valid if dl is None else dl
        check_loader(dl, 'dl')
        was_training = self.model.training
        try: self._do_pass(dl, False)
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

    def __repr__(self):
        return (f'{type(self).__name__}(model={type(self.model).__name__}, opt={type(self.opt).__name__}, '
                f'cbs={[type(c).__name__ for c in self.cbs]})')
