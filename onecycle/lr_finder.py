"""The learning-rate range test: train briefly while the lr grows, watch the loss, put everything back."""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from .callback import CancelFitException, CancelValidateException
from .checks import check_choice, check_int, check_positive
from .recorder import smooth_ema
from .schedule import Exponential, Linear
from .schedulers import ParamScheduler
from .suggest import suggest_minimum, suggest_steep, suggest_valley

__all__ = ['LRFinder', 'LRFinderResult', 'lr_find', 'TrainingState']


def _to_cpu(o):
    if isinstance(o, torch.Tensor): return o.detach().to('cpu', copy=True)
    if isinstance(o, dict): return {k: _to_cpu(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return type(o)(_to_cpu(v) for v in o)
    return copy.deepcopy(o)


class TrainingState:
    """An in-memory copy of everything a trial run may change: model weights and buffers, optimizer
    state and hyper-parameters, the recorder's history and the RNG states. ``restore()`` puts them
    back bitwise; nothing is written to disk."""
    def __init__(self, learn):
        self.learn = learn
        self.model = _to_cpu(learn.model.state_dict())
        self.opt = _to_cpu(learn.opt.state_dict())
        self.recorder = learn.recorder.state_dict()
        self.rng = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                    torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def restore(self):
        learn = self.learn
        learn.model.load_state_dict(self.model)
        learn.opt.load_state_dict(self.opt)
        learn.recorder.load_state_dict(self.recorder)
        random.setstate(self.rng[0]); np.random.set_state(self.rng[1]); torch.set_rng_state(self.rng[2])
        if self.rng[3] is not None: torch.cuda.set_rng_state_all(self.rng[3])


@dataclass
class LRFinderResult:
    "What a range test saw: the lr and loss of every step, the smoothed losses, and suggestions."
    lrs: list
    losses: list
    smooth_losses: list
    suggestions: dict = field(default_factory=dict)
    suggestion: float = float('nan')
    stopped_early: bool = False

    def plot(self, skip_start=0, skip_end=0, ax=None, show_suggestions=True):
        "Smoothed loss against the learning rate (log axis), suggestions marked; returns the Figure."
        import matplotlib.pyplot as plt
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
        end = len(self.lrs) - skip_end
        ax.plot(self.lrs[skip_start:end], self.smooth_losses[skip_start:end], label='smoothed loss')
        ax.plot(self.lrs[skip_start:end], self.losses[skip_start:end], alpha=0.25, color='C0', label='raw loss')
        if show_suggestions:
            for i, (name, lr) in enumerate(self.suggestions.items()):
                ax.axvline(lr, color=f'C{i + 1}', ls='--', label=f'{name}: {lr:.2e}')
        ax.set_xscale('log'); ax.set_xlabel('learning rate'); ax.set_ylabel('loss'); ax.set_title('LR range test')
        finite = [l for l in self.smooth_losses[skip_start:end] if math.isfinite(l)]
        if finite:   # keep the divergence spike from flattening the interesting part
            lo, hi = min(finite), min(max(finite), 4 * min(finite) if min(finite) > 0 else max(finite))
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
        ax.legend(fontsize=8)
        return fig


SUGGESTERS = {'valley': suggest_valley, 'steep': suggest_steep, 'minimum': suggest_minimum}


class LRFinder(ParamScheduler):
    """Raises the learning rate of every param group from `start_lr` to `end_lr` over `num_it`
    optimizer steps (geometrically, or linearly with ``mode='linear'``), recording the training loss.
    Stops early when the smoothed loss exceeds `div_threshold` times its minimum or turns NaN/inf
    (with `stop_div`). Validation is skipped. Afterwards the model, optimizer, recorder and RNG
    states are exactly what they were before."""
    order = 5   # before the Recorder resets its history

    def __init__(self, start_lr=1e-7, end_lr=10., num_it=100, stop_div=True, div_threshold=4., mode='exp', beta=0.98):
        check_positive('start_lr', start_lr); check_positive('end_lr', end_lr)
        if end_lr <= start_lr: raise ValueError(f'end_lr must be greater than start_lr, got start_lr={start_lr}, end_lr={end_lr}')
        check_int('num_it', num_it, min_value=2)
        check_positive('div_threshold', div_threshold)
        check_choice('mode', mode, ('exp', 'linear'))
        super().__init__({'lr': (Exponential if mode == 'exp' else Linear)(start_lr, end_lr)}, total_steps=num_it)
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div
        self.div_threshold, self.mode, self.beta = div_threshold, mode, beta

    def before_fit(self):
        self.state = TrainingState(self.learn)
        super().before_fit()
        self.lrs, self.losses, self.smooth, self.stopped_early = [], [], [], False
        self._avg, self._best = 0., float('inf')

    def before_validate(self):
        raise CancelValidateException()

    def after_step(self):
        loss = float(self.learn.loss.detach())
        self.lrs.append(float(self.learn.opt.param_groups[-1]['lr'])); self.losses.append(loss)
        n = len(self.losses)
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        s = self._avg / (1 - self.beta ** n)
        self.smooth.append(s)
        if math.isfinite(s): self._best = min(self._best, s)
        if self.stop_div and (not math.isfinite(loss) or s > self.div_threshold * self._best):
            self.stopped_early = True
            raise CancelFitException()
        if n >= self.num_it: raise CancelFitException()

    def after_fit(self):
        state = getattr(self, 'state', None)
        if state is not None: state.restore(); self.state = None

    def result(self, suggest='valley') -> LRFinderResult:
        if len(self.lrs) < 3:
            raise RuntimeError(f'the range test stopped after {len(self.lrs)} steps, too few to suggest a learning '
                               'rate: lower start_lr or raise div_threshold')
        # ignore the tail after divergence for the suggestions
        sugg = {name: f(self.lrs, self.smooth) for name, f in SUGGESTERS.items()}
        return LRFinderResult(list(self.lrs), list(self.losses), list(self.smooth), sugg, sugg[suggest], self.stopped_early)


def lr_find(learn, start_lr=1e-7, end_lr=10., num_it=100, stop_div=True, suggest='valley', **kwargs) -> LRFinderResult:
    """Run the LR range test on `learn` and return its result; the learner is left as it was.

    ``result.suggestion`` is the `suggest` entry of ``result.suggestions``."""
    check_choice('suggest', suggest, tuple(SUGGESTERS))
    finder = LRFinder(start_lr, end_lr, num_it, stop_div, **kwargs)
    learn._check_loader(learn.dls.train, 'dls.train')
    n_epoch = math.ceil(num_it / learn.steps_per_epoch)
    learn.fit(n_epoch, cbs=[finder])
    return finder.result(suggest)
