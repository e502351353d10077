"""Schedules: pure functions of training progress.

A schedule maps progress ``pct`` in [0, 1] (0 at the first optimizer step, 1 at the last) to a
value. They are small classes rather than closures so that they pickle, compare and print; any
plain callable ``f(pct) -> float`` works wherever a schedule is expected.
"""
from __future__ import annotations

import bisect
import math

from .checks import check_choice, check_number, check_positive

__all__ = ['Schedule', 'Constant', 'Linear', 'Cosine', 'Exponential', 'Phases', 'combine', 'one_cycle',
           'progress_of_step']


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
    its own progress rescaled to [0, 1]. ``ends`` holds the inner boundaries, increasing in (0, 1);
    a progress exactly on a boundary belongs to the earlier phase."""
    def __init__(self, scheds, ends):
        scheds, ends = list(scheds), [float(e) for e in ends]
        if not scheds: raise ValueError('scheds must hold at least one schedule')
        if len(ends) != len(scheds) - 1:
            raise ValueError(f'ends must hold {len(scheds) - 1} boundaries for {len(scheds)} schedules, got {len(ends)}')
        if any(not 0 <= e <= 1 for e in ends) or ends != sorted(ends):
            raise ValueError(f'ends must be increasing fractions in [0, 1], got {ends}')
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
    f = _ANNEAL[anneal_strategy]
    if total_steps is not None and total_steps > 1:
        b1 = (pct_start * total_steps - 1) / (total_steps - 1)
        b2 = (2 * pct_start * total_steps - 2) / (total_steps - 1)
    else:
        b1, b2 = pct_start, 2 * pct_start
    b1 = min(max(b1, 0.), 1.)
    if three_phase:
        if not b2 < 1: raise ValueError(f'pct_start must be below 0.5 with three_phase=True, got {pct_start}')
        return Phases([f(start, peak), f(peak, start), f(start, end)], [b1, b2])
    return Phases([f(start, peak), f(peak, end)], [b1])
