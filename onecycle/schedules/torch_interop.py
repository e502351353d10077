"""torch.optim.lr_scheduler and our schedules, both ways.

``TorchScheduler`` runs any torch scheduler inside the Learner, stepped after every optimizer step or
after every epoch (ReduceLROnPlateau gets the validation loss). ``to_torch_scheduler`` turns our
schedules into a torch scheduler, for a plain PyTorch loop outside the Learner.
"""
from __future__ import annotations

import copy

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from ..core.callback import Callback
from ..core.checks import check_choice, check_int
from ..core.hyper import has_hyper, hyper_state, restore_hyper_state, set_hyper
from ..core.plotting import plot_hypers
from .functions import progress_of_step
from .scheduler import ParamScheduler, per_group_scheds

__all__ = ['TorchScheduler', 'ScheduleLR', 'to_torch_scheduler']

_SCHED_TYPES = (LRScheduler, ReduceLROnPlateau)


class TorchScheduler(Callback):
    """Runs a ``torch.optim.lr_scheduler`` scheduler inside the Learner.

    Args:
        sched: a factory ``opt -> scheduler``, e.g. ``lambda opt: StepLR(opt, step_size=100)``, called
            at the start of every fit so the scheduler binds to ``learn.opt`` and starts from the
            learning rates the fit starts with; or a scheduler already built on ``learn.opt``, which
            then keeps its state from one fit to the next.
        interval: ``'step'`` to step it after every optimizer step (a step that gradient accumulation,
            DivergenceGuard or the fp16 GradScaler skips is cancelled and does not count), ``'epoch'``
            after every epoch, once validation is done.
        monitor: for ReduceLROnPlateau, the value given to ``step(value)``: per epoch ``'valid_loss'``
            (default), ``'train_loss'`` or a metric's name; per step only ``'train_loss'``, the batch loss.

    The Recorder sees the learning rate each step was taken with, as with our own schedules.
    """
    order = 60   # after the Recorder (50): it records a step's lr before the scheduler moves it

    def __init__(self, sched, interval='step', monitor=None):
        if not isinstance(sched, _SCHED_TYPES) and not callable(sched):
            raise TypeError('sched must be a torch lr scheduler or a factory opt -> scheduler, '
                            f'got {type(sched).__name__}')
        self.interval = check_choice('interval', interval, ('step', 'epoch'))
        default = 'valid_loss' if interval == 'epoch' else 'train_loss'
        self.monitor = monitor if monitor is not None else default
        if not isinstance(self.monitor, str): raise TypeError(f'monitor must be a name, got {type(monitor).__name__}')
        if interval == 'step' and self.monitor != 'train_loss':
            raise ValueError(f"per step only the batch loss can be monitored: monitor must be 'train_loss', "
                             f"got {monitor!r}")
        self._given, self.sched = sched, (sched if isinstance(sched, _SCHED_TYPES) else None)

    @property
    def is_plateau(self) -> bool:
        return isinstance(self.sched, ReduceLROnPlateau)

    def before_fit(self):
        learn = self.learn
        for cb in learn.cbs:
            if isinstance(cb, ParamScheduler) and 'lr' in cb.scheds:
                raise ValueError(f'{type(cb).__name__} already schedules the learning rate; '
                                 'use one of it and TorchScheduler')
        if isinstance(self._given, _SCHED_TYPES):
            if self._given.optimizer is not learn.opt:
                raise ValueError('the scheduler is bound to another optimizer than learn.opt; pass a factory '
                                 '`lambda opt: Scheduler(opt, ...)` so it binds to the optimizer the Learner uses')
        else:
            state = hyper_state(learn.opt)
            try:
                for pg in learn.opt.param_groups: pg.pop('initial_lr', None)   # start from this fit's lrs
                sched = self._given(learn.opt)
                if not isinstance(sched, _SCHED_TYPES):
                    raise TypeError(f'the factory must return a torch lr scheduler, got {type(sched).__name__}')
                if sched.optimizer is not learn.opt:
                    raise ValueError('the factory built a scheduler on another optimizer than the one it was given')
            except BaseException:
                restore_hyper_state(learn.opt, state)   # a failed factory leaves the optimizer as it was
                raise
            self.sched = sched
        if self.is_plateau and self.interval == 'epoch':
            names = learn.recorder.metric_names
            if self.monitor not in names:
                raise ValueError(f'monitor must be one of {[n for n in names if n not in ("epoch", "time")]}, '
                                 f'got {self.monitor!r}'
                                 + (' (there is no validation set)' if learn.dls.valid is None else ''))

    def state_dict(self) -> dict:
        "The torch scheduler's own state, so a checkpointed fit resumes mid-schedule; empty before a fit."
        return self.sched.state_dict() if self.sched is not None else {}

    def load_state_dict(self, sd: dict):
        # a copy: some torch schedulers (CyclicLR) pop keys from the dict they load
        if sd and self.sched is not None: self.sched.load_state_dict(copy.deepcopy(sd))

    def after_step(self):
        if self.interval != 'step': return
        if self.is_plateau: self.sched.step(float(self.learn.loss.detach()))
        else: self.sched.step()

    def after_epoch(self):
        if self.interval != 'epoch': return
        if not self.is_plateau: self.sched.step(); return
        rows = self.learn.recorder.epochs   # the Recorder (order 50) has just written this epoch's row
        self.sched.step(rows[-1].get(self.monitor, float('nan')) if rows else float('nan'))

    def sample(self, n_steps=100, n_groups=1, steps_per_epoch=None, lr=1e-3) -> dict:
        """The lr (and momentum) each of `n_steps` steps would get, from a scheduler the factory builds
        on a throwaway SGD optimizer (momentum 0.9) at `lr`, without training; the layout of
        ``Recorder.hps``. Per-epoch scheduling needs `steps_per_epoch`."""
        n_steps = check_int('n_steps', n_steps, min_value=1); n_groups = check_int('n_groups', n_groups, min_value=1)
        if isinstance(self._given, _SCHED_TYPES):
            raise ValueError('only a scheduler given as a factory can be sampled without touching its optimizer')
        if self.interval == 'epoch':
            if steps_per_epoch is None:
                raise ValueError('a per-epoch scheduler needs steps_per_epoch to be drawn in steps')
            check_int('steps_per_epoch', steps_per_epoch, min_value=1)
        params = [torch.zeros(1, requires_grad=True) for _ in range(n_groups)]
        opt = torch.optim.SGD([{'params': [p]} for p in params], lr=lr, momentum=0.9)
        sched = self._given(opt)
        if isinstance(sched, ReduceLROnPlateau):
            raise ValueError('ReduceLROnPlateau depends on the losses of a run: it has no schedule to draw beforehand')
        hps = {'lr': [], 'mom': []}
        for i in range(n_steps):
            hps['lr'].append([float(pg['lr']) for pg in opt.param_groups])
            hps['mom'].append([float(pg['momentum']) for pg in opt.param_groups])
            opt.step()   # no gradients: changes nothing, but keeps torch's step-order check quiet
            if self.interval == 'step' or (i + 1) % steps_per_epoch == 0: sched.step()
        if all(m == hps['mom'][0] for m in hps['mom']): del hps['mom']
        return hps

    def plot(self, n_steps=100, n_groups=1, steps_per_epoch=None, lr=1e-3):
        "Draw the schedule `sample` gives; returns the Figure."
        return plot_hypers(self.sample(n_steps, n_groups, steps_per_epoch, lr), title=type(self.sched or self).__name__)


def _per_group(name, s, n_groups):
    fs = per_group_scheds(name, s, n_groups)
    for f in fs:
        if not callable(f): raise TypeError(f'the schedule for {name!r} must be callable, got {type(f).__name__}')
    return fs


class ScheduleLR(LRScheduler):
    """A torch scheduler that follows our schedules: after `i` calls of ``step()`` each param group's
    lr is ``sched(i / (total_steps - 1))``, so the first optimizer step uses sched(0) and step
    total_steps - 1 uses sched(1); after that the final value holds.

    `scheds` is a schedule, a list of them (one per param group), or a dict ``{name: schedule or
    list}`` to drive other hyper-parameters too ('mom', 'beta2', 'eps', 'wd'... as in ParamScheduler).
    ``state_dict`` keeps the step count, not the schedules: rebuild with the same schedules, then load.
    """
    def __init__(self, optimizer, scheds, total_steps, last_epoch=-1):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f'optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}')
        self.total_steps = check_int('total_steps', total_steps, min_value=1)
        if not isinstance(scheds, dict): scheds = {'lr': scheds}
        if not scheds: raise ValueError('scheds must name at least one hyper-parameter')
        pgs = optimizer.param_groups
        for name in scheds:
            if not has_hyper(pgs[0], name):
                raise ValueError(f'the optimizer {type(optimizer).__name__} has no hyper-parameter {name!r}')
        self.scheds = {k: _per_group(k, s, len(pgs)) for k, s in scheds.items()}
        super().__init__(optimizer, last_epoch)

    def _values(self, name):
        pct = progress_of_step(max(self.last_epoch, 0), self.total_steps)
        return [float(f(pct)) for f in self.scheds[name]]

    def get_lr(self):
        if 'lr' not in self.scheds: return [pg['lr'] for pg in self.optimizer.param_groups]
        return self._values('lr')

    _get_closed_form_lr = get_lr

    def step(self, epoch=None):
        super().step(epoch)
        for name in self.scheds:
            if name == 'lr': continue
            for pg, v in zip(self.optimizer.param_groups, self._values(name)): set_hyper(pg, name, v)

    def state_dict(self):
        return {k: v for k, v in super().state_dict().items() if k != 'scheds'}


def to_torch_scheduler(opt, sched, total_steps) -> ScheduleLR:
    """Our schedule(s) as a torch scheduler on `opt` for a plain PyTorch loop of `total_steps`
    optimizer steps: call ``opt.step()`` then ``scheduler.step()`` each iteration, as with any torch
    scheduler. `sched` is a schedule, one per param group, or a dict by hyper-parameter name."""
    return ScheduleLR(opt, sched, total_steps)
