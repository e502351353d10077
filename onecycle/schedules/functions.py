"""Schedules: pure functions of training progress.

A schedule maps progress ``pct`` in [0, 1] (0 at the first optimizer step, 1 at the last) to a
value. They are small classes rather than closures so that they pickle, compare and print; any
plain callable ``f(pct) -> float`` works wherever a schedule is expected.
"""
from __future__ import annotations

import bisect
import math

from ..core.checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_positive,
    check_range,
)

__all__ = ['Schedule', 'Constant', 'Linear', 'Cosine', 'Exponential', 'Phases', 'combine', 'one_cycle',
           'progress_of_step', 'StepDecay', 'MultiStepDecay', 'ExponentialDecay', 'InverseTimeDecay',
           'PolynomialDecay', 'CosineAnnealing', 'CosineWarmRestarts', 'Cyclical', 'SlantedTriangular',
           'OneCyclePlateau', 'FlatCos', 'Warmup']


def progress_of_step(step: int, total_steps: int) -> float:
    "Progress of 0-based optimizer step `step` in a run of `total_steps`: 0 first, 1 last."
    return min(max(step / (total_steps - 1), 0.), 1.) if total_steps > 1 else 0.


class Schedule:
    "Base class: subclasses implement ``__call__(pct)``; equality and repr come from the fields."
    def __call__(self, pct: float) -> float:
        raise NotImplementedError

    def _fields(self):
        return dict(vars(self))

    def __eq__(self, other):
        return type(self) is type(other) and self._fields() == other._fields()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._fields().items())})"

    def values(self, n: int = 100) -> list[float]:
        "The schedule at `n` evenly spaced points from 0 to 1 (for plots and checks)."
        return [self(progress_of_step(i, n)) for i in range(n)]


class Constant(Schedule):
    "f(pct) = value"
    def __init__(self, value):
        self.value = check_number('value', value)
    def __call__(self, pct): return self.value


class Linear(Schedule):
    "f(pct) = start + pct * (end - start)"
    def __init__(self, start, end):
        self.start, self.end = check_number('start', start), check_number('end', end)
    def __call__(self, pct): return (self.end - self.start) * pct + self.start


class Cosine(Schedule):
    "f(pct) = end + (start - end) / 2 * (1 + cos(pi * pct)): a half cosine from start to end."
    def __init__(self, start, end):
        self.start, self.end = check_number('start', start), check_number('end', end)
    def __call__(self, pct): return self.end + (self.start - self.end) / 2. * (math.cos(math.pi * pct) + 1)


class Exponential(Schedule):
    "f(pct) = start * (end / start) ** pct: geometric, as in the LR range test. start, end > 0."
    def __init__(self, start, end):
        self.start, self.end = check_positive('start', start), check_positive('end', end)
    def __call__(self, pct): return self.start * (self.end / self.start) ** pct


class Phases(Schedule):
    """Schedules joined end to end: phase i covers progress from ``ends[i-1]`` to ``ends[i]`` and sees
    its own progress rescaled to [0, 1]. ``ends`` holds the inner boundaries, increasing and at most 1;
    a progress exactly on a boundary belongs to the earlier phase. A boundary below 0 means the
    next phase began before training did (as in torch's OneCycleLR on very short runs): training
    then starts part-way into that phase."""
    def __init__(self, scheds, ends):
        scheds, ends = list(scheds), [float(e) for e in ends]
        if not scheds: raise ValueError('scheds must hold at least one schedule')
        if len(ends) != len(scheds) - 1:
            raise ValueError(f'ends must hold {len(scheds) - 1} boundaries for {len(scheds)} schedules, '
                             f'got {len(ends)}')
        if any(e > 1 for e in ends) or ends != sorted(ends):
            raise ValueError(f'ends must be increasing fractions of at most 1, got {ends}')
        for s in scheds:
            if not callable(s): raise TypeError(f'every schedule must be callable, got {type(s).__name__}')
        self.scheds, self.ends = scheds, ends

    def __call__(self, pct):
        i = bisect.bisect_left(self.ends, pct)
        lo = self.ends[i - 1] if i > 0 else 0.
        hi = self.ends[i] if i < len(self.ends) else 1.
        return self.scheds[i]((pct - lo) / (hi - lo) if hi > lo else 1.)


def combine(pcts, scheds) -> Phases:
    "Join `scheds`, phase i lasting the fraction `pcts[i]` of training (the fractions sum to 1)."
    pcts = [float(p) for p in pcts]
    if len(pcts) != len(scheds): raise ValueError(f'pcts and scheds differ in length ({len(pcts)} and {len(scheds)})')
    if any(p < 0 for p in pcts) or abs(sum(pcts) - 1) > 1e-6:
        raise ValueError(f'pcts must be non-negative fractions summing to 1, got {pcts}')
    ends, acc = [], 0.
    for p in pcts[:-1]: acc += p; ends.append(acc)
    return Phases(scheds, ends)


_ANNEAL = {'cos': Cosine, 'linear': Linear}


def one_cycle(start, peak, end, pct_start=0.3, anneal_strategy='cos', three_phase=False, total_steps=None) -> Phases:
    """1cycle: ``start`` up to ``peak`` over the first `pct_start` of training, then down to ``end``.

    With `three_phase` (Smith's paper): up to peak, back down to start over the same length, then on
    down to `end` ("annihilation"). Given `total_steps`, the phase boundaries fall on exactly the
    steps torch's OneCycleLR uses (step pct_start*total - 1), so both agree step for step.
    Momentum uses the same shape with start=end=high momentum and peak=low momentum.
    """
    check_choice('anneal_strategy', anneal_strategy, tuple(_ANNEAL))
    check_fraction('pct_start', pct_start); check_bool('three_phase', three_phase)
    for name, v in (('start', start), ('peak', peak), ('end', end)): check_number(name, v)
    f = _ANNEAL[anneal_strategy]
    if total_steps is not None and total_steps > 1:
        b1 = (pct_start * total_steps - 1) / (total_steps - 1)
        b2 = (2 * pct_start * total_steps - 2) / (total_steps - 1)
    else:
        b1, b2 = pct_start, 2 * pct_start
    if three_phase:
        if not b2 < 1: raise ValueError(f'pct_start must be below 0.5 with three_phase=True, got {pct_start}')
        # On runs of a few steps both boundaries can fall below 0 (b2 < b1); torch then starts in the
        # last phase, measured from b2, which min() reproduces.
        return Phases([f(start, peak), f(peak, start), f(start, end)], [min(b1, b2), b2])
    return Phases([f(start, peak), f(peak, end)], [b1])


# --- the catalogue ---------------------------------------------------------------------------------
# Step-based schedules (step decay, cyclical, SGDR...) measure their lengths in optimizer steps when
# given `total_steps` (then t = pct * (total_steps - 1) is the step index, so they agree with torch's
# schedulers step for step), and in fractions of training otherwise (t = pct).

def _elapsed(pct: float, total_steps) -> float:
    "t: progress itself, or the 0-based step index when `total_steps` is given (snapped to whole steps)."
    if total_steps is None: return pct
    t = pct * (total_steps - 1)
    r = round(t)
    return float(r) if abs(t - r) < 1e-6 else t


def _count(x: float) -> int:
    "floor(x), forgiving the rounding of a value that should be a whole number."
    return math.floor(x + 1e-9)


class _Timed(Schedule):
    "Base of the schedules whose lengths are in steps (given total_steps) or fractions of training."
    def _set_total(self, total_steps):
        self.total_steps = check_int('total_steps', total_steps, min_value=1, allow_none=True)

    def _t(self, pct): return _elapsed(pct, self.total_steps)

    def _whole(self):
        "The length of the whole run in this schedule's units."
        return 1. if self.total_steps is None else float(max(self.total_steps - 1, 0))


class StepDecay(_Timed):
    """Step decay: f = start * gamma ** floor(t / step_size), i.e. multiplied by `gamma` every
    `step_size`. With `total_steps`, the same as ``torch.optim.lr_scheduler.StepLR(step_size, gamma)``
    stepped once per optimizer step."""
    def __init__(self, start, step_size, gamma=0.1, total_steps=None):
        self.start, self.step_size = check_number('start', start), check_positive('step_size', step_size)
        self.gamma = check_positive('gamma', gamma)
        self._set_total(total_steps)
    def __call__(self, pct): return self.start * self.gamma ** _count(self._t(pct) / self.step_size)


class MultiStepDecay(_Timed):
    """Multi-step decay: f = start * gamma ** (number of milestones <= t), e.g. x0.1 at 50% and 75%
    of training. A milestone repeated counts twice. With `total_steps` (milestones in steps), the same
    as ``torch.optim.lr_scheduler.MultiStepLR(milestones, gamma)``."""
    def __init__(self, start, milestones, gamma=0.1, total_steps=None):
        self.start, self.gamma = check_number('start', start), check_positive('gamma', gamma)
        if not isinstance(milestones, (list, tuple)) or not milestones:
            raise TypeError(f'milestones must be a non-empty list of numbers, got {milestones!r}')
        self.milestones = sorted(check_positive('milestones', m, allow_zero=True) for m in milestones)
        self._set_total(total_steps)
    def __call__(self, pct):
        return self.start * self.gamma ** bisect.bisect_right(self.milestones, self._t(pct) + 1e-9)


class ExponentialDecay(_Timed):
    """Exponential decay: f = start * gamma ** t  (= start * exp(-k t) with gamma = exp(-k)). `gamma` is
    the factor per optimizer step given `total_steps` (torch's ``ExponentialLR(gamma)``), else the
    factor over the whole run, so ``ExponentialDecay(1, 1e-3)`` ends at 1e-3."""
    def __init__(self, start, gamma, total_steps=None):
        self.start, self.gamma = check_number('start', start), check_positive('gamma', gamma)
        self._set_total(total_steps)
    def __call__(self, pct): return self.start * self.gamma ** self._t(pct)


class InverseTimeDecay(_Timed):
    """Inverse-time decay: f = start / (1 + gamma * t) ** power (Caffe's "inv" policy; power=1 gives
    the classic start / (1 + gamma t)). Decays fast at first, then ever more slowly."""
    def __init__(self, start, gamma, power=1., total_steps=None):
        self.start, self.gamma = check_number('start', start), check_positive('gamma', gamma, allow_zero=True)
        self.power = check_positive('power', power)
        self._set_total(total_steps)
    def __call__(self, pct): return self.start / (1. + self.gamma * self._t(pct)) ** self.power


class PolynomialDecay(_Timed):
    """Polynomial decay: f = end + (start - end) * (1 - min(t, total_iters) / total_iters) ** power;
    power=1 is linear. `total_iters` defaults to the whole run. With ``end=0`` and `total_steps`, the
    same as ``torch.optim.lr_scheduler.PolynomialLR(total_iters, power)``."""
    def __init__(self, start, end=0., power=1., total_iters=None, total_steps=None):
        self.start, self.end = check_number('start', start), check_number('end', end)
        self.power = check_positive('power', power)
        self.total_iters = check_positive('total_iters', total_iters, allow_none=True)
        self._set_total(total_steps)
    def __call__(self, pct):
        d = self.total_iters if self.total_iters is not None else self._whole()
        frac = min(self._t(pct) / d, 1.) if d > 0 else 0.
        return self.end + (self.start - self.end) * (1. - frac) ** self.power


class CosineAnnealing(_Timed):
    """Cosine annealing: f = end + (start - end) * (1 + cos(pi * t / t_max)) / 2, from `start` at t=0 to
    `end` at t=t_max (and back up after, as the cosine goes on). `t_max` defaults to the whole run,
    which is ``Cosine(start, end)``. With `total_steps`, the same as torch's
    ``CosineAnnealingLR(T_max=t_max, eta_min=end)``."""
    def __init__(self, start, end=0., t_max=None, total_steps=None):
        self.start, self.end = check_number('start', start), check_number('end', end)
        self.t_max = check_positive('t_max', t_max, allow_none=True)
        self._set_total(total_steps)
    def __call__(self, pct):
        tm = self.t_max if self.t_max is not None else self._whole()
        cos = math.cos(math.pi * self._t(pct) / tm) if tm > 0 else 1.
        return self.end + (self.start - self.end) * (1. + cos) / 2.


class CosineWarmRestarts(_Timed):
    """SGDR, cosine annealing with warm restarts (Loshchilov & Hutter): cycle i lasts
    cycle_len * cycle_mult**i, and within it f = end + (start - end) * (1 + cos(pi * t_cur / t_i)) / 2,
    t_cur the time since the last restart and t_i the cycle's length. With `total_steps`, the same as
    torch's ``CosineAnnealingWarmRestarts(T_0=cycle_len, T_mult=cycle_mult, eta_min=end)``."""
    def __init__(self, start, end=0., cycle_len=None, cycle_mult=1, total_steps=None):
        self.start, self.end = check_number('start', start), check_number('end', end)
        if cycle_len is None: raise ValueError('cycle_len is required: the length of the first cycle')
        self.cycle_len = check_positive('cycle_len', cycle_len)
        check_number('cycle_mult', cycle_mult)
        if cycle_mult < 1: raise ValueError(f'cycle_mult must be >= 1, got {cycle_mult!r}')
        self.cycle_mult = cycle_mult
        self._set_total(total_steps)

    def position(self, pct):
        "(t_cur, t_i): the time since the last restart and the length of the current cycle."
        t, length = self._t(pct), float(self.cycle_len)
        if self.cycle_mult == 1:
            n = _count(t / length)
            return max(t - n * length, 0.), length
        while t >= length * (1 - 1e-9):
            t -= length; length *= self.cycle_mult
        return max(t, 0.), length

    def __call__(self, pct):
        t_cur, t_i = self.position(pct)
        return self.end + (self.start - self.end) * (1. + math.cos(math.pi * t_cur / t_i)) / 2.


CLR_MODES = ('triangular', 'triangular2', 'exp_range')


class Cyclical(_Timed):
    """Cyclical learning rate (Smith 2017): back and forth between `base` and `peak`, rising over
    `step_size` and falling over `step_size_down` (default: the same). With c = t / (up + down):
    cycle = floor(1 + c), x = 1 + c - cycle, s = x / r if x <= r else (x - 1) / (r - 1), r = up/(up+down),
    f = base + (peak - base) * s * a, where the amplitude a is 1 ('triangular'), 1 / 2**(cycle - 1)
    ('triangular2', halved every cycle) or gamma**t ('exp_range').
    With `total_steps`, the same as torch's ``CyclicLR(base_lr, max_lr, step_size_up, step_size_down,
    mode, gamma)``. `peak` may be below `base`: momentum cycles the other way with base=0.95, peak=0.85."""
    def __init__(self, base, peak, step_size, step_size_down=None, mode='triangular', gamma=1., total_steps=None):
        self.base, self.peak = check_number('base', base), check_number('peak', peak)
        self.step_size = check_positive('step_size', step_size)
        self.step_size_down = check_positive('step_size_down', step_size_down, allow_none=True)
        self.mode, self.gamma = check_choice('mode', mode, CLR_MODES), check_positive('gamma', gamma)
        self._set_total(total_steps)

    def __call__(self, pct):
        t = self._t(pct)
        up = float(self.step_size)
        total = up + (self.step_size_down if self.step_size_down is not None else up)
        ratio = up / total
        cycle = math.floor(1 + t / total)
        x = 1. + t / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == 'triangular': amp = 1.
        elif self.mode == 'triangular2': amp = 1 / 2. ** (cycle - 1)
        else: amp = self.gamma ** t
        return self.base + (self.peak - self.base) * scale * amp


class SlantedTriangular(Schedule):
    """Slanted triangular learning rate (Howard & Ruder, ULMFiT): a short linear rise over the first
    `cut_frac` of training, then a long linear decay. p = pct / cut_frac before the cut, else
    1 - (pct - cut_frac) / (1 - cut_frac); f = peak * (1 + p * (ratio - 1)) / ratio, so the run starts
    and ends at peak / ratio."""
    def __init__(self, peak, cut_frac=0.1, ratio=32.):
        self.peak, self.cut_frac = check_number('peak', peak), check_fraction('cut_frac', cut_frac)
        self.ratio = check_positive('ratio', ratio)
        if ratio < 1:
            raise ValueError(f'ratio must be >= 1 (how much smaller the lowest lr is than peak), got {ratio!r}')
    def __call__(self, pct):
        p = pct / self.cut_frac if pct < self.cut_frac else 1. - (pct - self.cut_frac) / (1. - self.cut_frac)
        return self.peak * (1. + p * (self.ratio - 1.)) / self.ratio


class _Composite(Phases):
    "Phases built from a few named arguments; repr and equality use those arguments."
    _args: tuple = ()
    def _fields(self): return {k: getattr(self, k) for k in self._args}


class OneCyclePlateau(_Composite):
    """1cycle with a plateau at the top (seed 002): `start` up to `peak` over the first `pct_start`,
    held at `peak` for the next `pct_plateau`, then annealed down to `end` over the rest. The anneal
    is f(a, b, p) = b + (a - b)(1 + cos(pi p)) / 2 ('cos') or a + p (b - a) ('linear').
    For momentum use the same shape upside down, OneCyclePlateau(0.95, 0.85, 0.95): momentum holds its
    minimum while the learning rate holds its maximum."""
    _args = ('start', 'peak', 'end', 'pct_start', 'pct_plateau', 'anneal_strategy')

    def __init__(self, start, peak, end, pct_start=0.25, pct_plateau=0.25, anneal_strategy='cos'):
        for k, v in (('start', start), ('peak', peak), ('end', end)): check_number(k, v)
        check_fraction('pct_start', pct_start); check_range('pct_plateau', pct_plateau, 0, 1, hi_open=True)
        if pct_start + pct_plateau >= 1:
            raise ValueError(f'pct_start + pct_plateau must be below 1 to leave room to anneal, '
                             f'got {pct_start} + {pct_plateau}')
        f = _ANNEAL[check_choice('anneal_strategy', anneal_strategy, tuple(_ANNEAL))]
        self.start, self.peak, self.end, self.anneal_strategy = start, peak, end, anneal_strategy
        self.pct_start, self.pct_plateau = pct_start, pct_plateau
        super().__init__([f(start, peak), Constant(peak), f(peak, end)], [pct_start, pct_start + pct_plateau])


class FlatCos(_Composite):
    """Flat, then cosine: f = value for the first `pct_flat` of training, then a half cosine down to
    `end` (fastai's flat_cos, the usual choice with Ranger/LAMB-like optimizers)."""
    _args = ('value', 'end', 'pct_flat')

    def __init__(self, value, end=0., pct_flat=0.75):
        self.value, self.end = check_number('value', value), check_number('end', end)
        self.pct_flat = check_range('pct_flat', pct_flat, 0, 1, hi_open=True)
        super().__init__([Constant(value), Cosine(value, end)], [pct_flat])


class Warmup(_Composite):
    """Linear warm-up before any schedule: f rises linearly from `start` to sched(0) over the first
    `warmup` of training, then follows `sched`, which sees the rest of training as its own progress
    0..1. `warmup` is a fraction of training in [0, 1), or a number of optimizer steps given
    `total_steps` (then steps 0..warmup warm up, and `sched` spans the remaining
    total_steps - warmup steps; give a step-based `sched` that many total_steps)."""
    _args = ('sched', 'warmup', 'start', 'total_steps')

    def __init__(self, sched, warmup=0.1, start=0., total_steps=None):
        if not callable(sched): raise TypeError(f'sched must be a schedule (callable), got {type(sched).__name__}')
        self.start = check_number('start', start)
        self.total_steps = check_int('total_steps', total_steps, min_value=2, allow_none=True)
        if total_steps is None:
            b = check_range('warmup', warmup, 0, 1, hi_open=True)
        else:
            check_int('warmup', warmup, min_value=0)
            if warmup >= total_steps - 1:
                raise ValueError(f'warmup must leave steps for the schedule: warmup < total_steps - 1, '
                                 f'got {warmup} of {total_steps}')
            b = warmup / (total_steps - 1)
        self.sched, self.warmup = sched, warmup
        super().__init__([Linear(start, sched(0.)), sched], [b])
